"""A scripted receiving MX for tests of mailroom's outbound delivery (plain SMTP, threads).

Runs in the test process on 127.0.0.1; records every transaction; the RCPT reply is
a function of the address and of how many times it was tried, so a test can script
"450 then 250" or "550 always".
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_LINE = 4096
MAX_DATA = 10 * 1024 * 1024


@dataclass
class Received:
    mail_from: str
    rcpts: list[str]
    data: bytes


@dataclass
class FakeMX:
    rcpt_reply: Callable[[str, int], str] = lambda _addr, _n: "250 2.1.5 Ok"
    messages: list[Received] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    port: int = 0
    _server: socketserver.ThreadingTCPServer | None = None

    def start(self) -> FakeMX:
        mx = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 30

            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 fake.example.com ESMTP")
                sender, rcpts = "", []
                while True:
                    raw = self.rfile.readline(MAX_LINE)
                    if not raw:
                        return
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    verb = line[:4].upper()
                    if verb == "EHLO":
                        self.wfile.write(b"250-fake.example.com\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n")
                    elif verb == "HELO":
                        self.reply("250 fake.example.com")
                    elif verb == "MAIL":
                        sender, rcpts = line.split(":", 1)[1].split()[0].strip("<>"), []
                        self.reply("250 2.1.0 Ok")
                    elif verb == "RCPT":
                        address = line.split(":", 1)[1].split()[0].strip("<>")
                        with threading.Lock():
                            count = mx.attempts.get(address, 0) + 1
                            mx.attempts[address] = count
                        answer = mx.rcpt_reply(address, count)
                        if answer.startswith("2"):
                            rcpts.append(address)
                        self.reply(answer)
                    elif verb == "DATA":
                        if not rcpts:
                            self.reply("554 5.5.1 Error: no valid recipients")
                            continue
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        chunks: list[bytes] = []
                        size = 0
                        while True:
                            part = self.rfile.readline(MAX_LINE)
                            if not part or part == b".\r\n":
                                break
                            size += len(part)
                            if size < MAX_DATA:
                                chunks.append(part[1:] if part.startswith(b"..") else part)
                        mx.messages.append(Received(sender, list(rcpts), b"".join(chunks)))
                        self.reply("250 2.0.0 Ok: queued as FAKE1")
                    elif verb == "RSET":
                        sender, rcpts = "", []
                        self.reply("250 2.0.0 Ok")
                    elif verb == "QUIT":
                        self.reply("221 2.0.0 Bye")
                        return
                    else:
                        self.reply("502 5.5.2 Error: command not recognized")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
