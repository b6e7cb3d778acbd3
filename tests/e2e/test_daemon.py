"""The server process as a daemon: shutdown, pid file, reload of policy, connect-time checks."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from tests.e2e.server import MailroomServer, RawSMTP


def test_sigterm_closes_idle_sessions_at_once_and_exits_0(
    mailroom_server_factory: Callable[..., MailroomServer],
) -> None:
    server = mailroom_server_factory(shutdown_timeout="30s")
    idle = RawSMTP(server.smtp_port)
    idle.greeting()
    idle.ehlo()
    assert server.proc is not None
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit(timeout=10) == 0
    assert time.monotonic() - started < 10, "an idle session must not hold shutdown for shutdown_timeout"
    assert idle.read_all(timeout=5)[0].startswith("421 4.3.2 ")
    assert not (server.config_dir / "data" / "mailroom.pid").exists()


def test_sigterm_lets_an_open_transaction_finish(mailroom_server_factory: Callable[..., MailroomServer]) -> None:
    server = mailroom_server_factory(shutdown_timeout="30s")
    client = RawSMTP(server.smtp_port)
    client.greeting()
    client.ehlo()
    assert client.cmd_line("MAIL FROM:<a@example.net>").startswith("250")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert client.cmd_line("RCPT TO:<john@example.org>").startswith("250")
    assert client.cmd_line("DATA").startswith("354")
    client.send(b"Subject: in flight\r\n\r\nbody\r\n.\r\n")
    assert client.reply_line().startswith("250 2.0.0 Ok: queued as ")
    client.send(b"QUIT\r\n")
    assert server.wait_exit(timeout=20) == 0


def test_pid_file_names_the_running_server(mailroom_server: MailroomServer) -> None:
    assert mailroom_server.proc is not None
    pid_file = mailroom_server.config_dir / "data" / "mailroom.pid"
    assert pid_file.read_text().strip() == str(mailroom_server.proc.pid)


def test_client_restrictions_at_connect_without_delay_reject(
    mailroom_server_factory: Callable[..., MailroomServer],
) -> None:
    server = mailroom_server_factory(smtpd_delay_reject="no", smtpd_client_restrictions="reject", mynetworks="")
    client = RawSMTP(server.smtp_port)
    assert client.greeting().startswith("554 5.7.1 ")
    assert "NOQUEUE: reject: CONNECT from localhost[127.0.0.1]" in server.wait_for_log(
        lambda text: "CONNECT from" in text
    )


def test_reload_applies_new_restrictions(mailroom_server: MailroomServer) -> None:
    client = RawSMTP(mailroom_server.smtp_port)
    client.greeting()
    client.ehlo()
    assert client.cmd_line("MAIL FROM:<a@example.net>").startswith("250")
    assert client.cmd_line("RCPT TO:<lisa@example.com>").startswith("250")  # 127.0.0.1 in mynetworks
    client.send(b"QUIT\r\n")
    mailroom_server.postconf(mynetworks="")
    assert mailroom_server.cli("reload").code == 0
    mailroom_server.wait_for_log(lambda text: "reload -- version" in text)
    client = RawSMTP(mailroom_server.smtp_port)
    client.greeting()
    client.ehlo()
    assert client.cmd_line("MAIL FROM:<a@example.net>").startswith("250")
    assert client.cmd_line("RCPT TO:<lisa@example.com>") == "554 5.7.1 <lisa@example.com>: Relay access denied"


def test_reload_with_a_broken_main_cf_keeps_serving(mailroom_server: MailroomServer) -> None:
    main_cf = mailroom_server.config_dir / "main.cf"
    main_cf.write_text(main_cf.read_text() + "message_size_limit = huge\n")
    assert mailroom_server.proc is not None
    mailroom_server.proc.send_signal(signal.SIGHUP)
    log = mailroom_server.wait_for_log(lambda text: "reload failed" in text)
    assert "message_size_limit" in log
    client = RawSMTP(mailroom_server.smtp_port)
    assert client.greeting().startswith("220 ")


def test_sighup_reloads_the_certificate_for_starttls_and_implicit_tls(mailroom_server: MailroomServer) -> None:
    import smtplib
    import ssl

    from cryptography import x509

    from mailroom.runtime.certs import write_self_signed

    def served_subject(implicit: bool) -> str:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if implicit:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", mailroom_server.submissions_port, context=context, timeout=10)
        else:
            smtp = smtplib.SMTP("127.0.0.1", mailroom_server.smtp_port, timeout=10)
            smtp.starttls(context=context)
        der = smtp.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
        smtp.quit()
        cert = x509.load_der_x509_certificate(der)
        return cert.subject.rfc4514_string()

    assert served_subject(False) == served_subject(True) == "CN=mail.example.org"
    tls = mailroom_server.config_dir / "tls"
    write_self_signed(tls / "cert.pem", tls / "key.pem", "renewed.example.org")
    assert mailroom_server.cli("reload").code == 0
    mailroom_server.wait_for_log(lambda text: "reload -- version" in text)
    assert served_subject(False) == "CN=renewed.example.org"
    assert served_subject(True) == "CN=renewed.example.org"


def test_smtpd_client_limit_refuses_sessions_beyond_it(
    mailroom_server_factory: Callable[..., MailroomServer],
) -> None:
    server = mailroom_server_factory(smtpd_client_limit="2")
    held = [RawSMTP(server.smtp_port) for _ in range(2)]
    for client in held:
        assert client.greeting().startswith("220 ")
    extra = RawSMTP(server.smtp_port)
    assert extra.greeting().startswith("421 4.3.2 mail.example.org Error: too many sessions")
    for client in held:
        client.send(b"QUIT\r\n")


def test_smtpd_sasl_authenticated_header_no_hides_the_user(
    mailroom_server_factory: Callable[..., MailroomServer],
) -> None:
    import base64

    server = mailroom_server_factory(smtpd_sasl_authenticated_header="no")
    client = RawSMTP(server.smtp_port)
    client.greeting()
    client.ehlo()
    client.starttls(server.ssl_context())
    client.ehlo()
    token = base64.b64encode(b"\0john@example.org\0summersun").decode()
    assert client.cmd_line(f"AUTH PLAIN {token}").startswith("235")
    assert client.cmd_line("MAIL FROM:<john@example.org>").startswith("250")
    assert client.cmd_line("RCPT TO:<john@example.org>").startswith("250")
    assert client.cmd_line("DATA").startswith("354")
    client.send(b"Subject: quiet\r\n\r\nx\r\n.\r\n")
    assert client.reply_line().startswith("250")
    server.wait_for_maildir(1)
    (message,) = server.messages()
    assert "Authenticated sender" not in message["Received"]
    assert "with ESMTPSA" in message["Received"]
