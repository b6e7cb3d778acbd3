"""Every POP3 reply text mailroom sends, once, in Dovecot's words where Dovecot has one.

RFC 1939 §3: a status line starts with "+OK" or "-ERR"; RFC 2449 §8 adds the
bracketed response codes ([AUTH], [SYS/TEMP], ...) that CAPA announces as RESP-CODES
and AUTH-RESP-CODE (RFC 3206).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    ok: bool
    text: str = ""

    def encode(self) -> bytes:
        status = "+OK" if self.ok else "-ERR"
        return f"{status} {self.text}\r\n".encode() if self.text else f"{status}\r\n".encode()

    def __str__(self) -> str:
        return self.encode().decode("utf-8", "replace").rstrip("\r\n")


def ok(text: str = "") -> Reply:
    return Reply(True, text)


def err(text: str) -> Reply:
    return Reply(False, text)


def greeting(text: str) -> Reply:
    return ok(text)  # Dovecot: "+OK Dovecot (Debian) ready."


OK = ok()
LOGGED_IN = ok("Logged in.")
LOGGING_OUT_AUTH = ok("Logging out")  # QUIT before login (Dovecot's pop3-login)
LOGGING_OUT = ok("Logging out.")
LOGGING_OUT_DELETED = ok("Logging out, messages deleted.")
MARKED_DELETED = ok("Marked to be deleted.")
BEGIN_TLS = ok("Begin TLS negotiation now.")  # RFC 2595 §4

UNKNOWN_COMMAND_AUTH = err("Unknown command.")
TOO_MANY_BAD_COMMANDS = err("Too many bad commands.")
LINE_TOO_LONG = err("Input line too long.")
NO_USERNAME = err("No username given.")
PLAINTEXT_DISALLOWED = err("[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
AUTH_FAILED = err("[AUTH] Authentication failed.")
AUTH_TEMP_FAILED = err("[SYS/TEMP] Temporary authentication failure.")
AUTH_ABORTED = err("Authentication aborted by client.")
AUTH_UNSUPPORTED = err("Unsupported authentication mechanism.")
AUTH_TOO_MANY_FAILURES = err("[AUTH] Too many authentication failures.")
TOO_MANY_CONNECTIONS = err("[SYS/TEMP] Too many connections from your address; try again later.")
INTERNAL_ERROR = err("[SYS/TEMP] Internal error occurred. Refer to server log for more information.")
TLS_ALREADY_ACTIVE = err("TLS is already active.")
TLS_NOT_AVAILABLE = err("TLS support isn't enabled.")
MESSAGE_DELETED = err("Message is deleted.")
MESSAGE_EXPUNGED = err("Message has been expunged by another session.")
INACTIVITY = err("Disconnected for inactivity.")
SHUTTING_DOWN = err("Server shutting down.")


def unknown_command(verb: str) -> Reply:
    return err(f"Unknown command: {verb}")


def invalid_number(arg: str) -> Reply:
    return err(f"Invalid message number: {arg}")


def number_too_large(arg: str) -> Reply:
    return err(f"Message number too large: {arg}")


def noise_after_number(arg: str) -> Reply:
    return err(f"Noise after message number: {arg}")


def no_such_message(number: int) -> Reply:
    return err(f"There's no message {number}.")


def invalid_size(arg: str) -> Reply:
    return err(f"Invalid size: {arg}")


def size_too_large(arg: str) -> Reply:
    return err(f"Size too large: {arg}")


def noise_after_size(arg: str) -> Reply:
    return err(f"Noise after size: {arg}")


def stat(count: int, size: int) -> Reply:
    return ok(f"{count} {size}")


def list_header(count: int) -> Reply:
    return ok(f"{count} messages:")


def scan_line(number: int, value: int | str) -> Reply:
    """LIST n (`+OK n size`) and UIDL n (`+OK n uidl`)."""
    return ok(f"{number} {value}")


def retr_header(size: int) -> Reply:
    return ok(f"{size} octets")


def challenge(b64: str) -> bytes:
    """RFC 5034 §4: `+ <base64>` (an empty challenge is "+ ")."""
    return f"+ {b64}\r\n".encode("ascii")
