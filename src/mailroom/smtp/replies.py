"""SMTP replies: a three-digit code, an enhanced status code (RFC 3463/2034) and text.

Every reply text mailroom sends lives in this module, once, in Postfix's words.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply; `enhanced` is empty where RFC 2034 gives none (greeting, EHLO)."""

    code: int
    enhanced: str
    text: str

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def lines(self) -> list[str]:
        """The reply as text lines without CRLF; multi-line text splits on "\\n"."""
        parts = self.text.split("\n")
        out = []
        for i, part in enumerate(parts):
            sep = " " if i == len(parts) - 1 else "-"
            body = f"{self.enhanced} {part}" if self.enhanced else part
            out.append(f"{self.code}{sep}{body}")
        return out

    def encode(self) -> bytes:
        if "\n" not in self.text:  # one line, as all but the EHLO reply: no list, no join
            if self.enhanced:
                return f"{self.code} {self.enhanced} {self.text}\r\n".encode("utf-8", "replace")
            return f"{self.code} {self.text}\r\n".encode("utf-8", "replace")
        return "".join(line + "\r\n" for line in self.lines()).encode("utf-8", "replace")

    def __str__(self) -> str:
        """The one-line form Postfix writes into log lines."""
        return f"{self.code} {self.enhanced} {self.text}" if self.enhanced else f"{self.code} {self.text}"


# ---------------------------------------------------------------------------
# The catalogue. Texts are Postfix 3.x smtpd's own words unless a comment says
# why mailroom differs. Factories take the variable part (hostname, queue id).
# ---------------------------------------------------------------------------


def greeting(banner: str) -> Reply:
    """RFC 5321 §4.2: 220 + smtpd_banner ("mail.example.org ESMTP mailroom")."""
    return Reply(220, "", banner)


def helo_ok(hostname: str) -> Reply:
    """RFC 5321 §4.1.1.1: HELO is answered with our name, no enhanced code."""
    return Reply(250, "", hostname)


def ehlo_ok(hostname: str, keywords: list[str]) -> Reply:
    """RFC 5321 §4.1.1.1: EHLO lists our name, then one extension per line."""
    return Reply(250, "", "\n".join([hostname, *keywords]))


def queued_as(queue_id: str, size: int | None = None) -> Reply:
    """RFC 5321 §4.1.1.4: the message is safe on disk (Postfix logs the same id).

    After BDAT LAST (RFC 3030 §2) Postfix also tells the message's size: `size` is
    the length of the message as queued.
    """
    if size is not None:
        return Reply(250, "2.0.0", f"Ok: {size} bytes queued as {queue_id}")
    return Reply(250, "2.0.0", f"Ok: queued as {queue_id}")


def chunk_received(size: int) -> Reply:
    """RFC 3030 §2: a BDAT chunk without LAST was read ("Ok: 1 bytes" too, as Postfix)."""
    return Reply(250, "2.0.0", f"Ok: {size} bytes")


def chunk_discarded(size: int) -> Reply:
    """A BDAT chunk after a refused one in the same transfer: read and thrown away."""
    return Reply(551, "5.0.0", f"Discarded {size} bytes after earlier error")


def vrfy_cannot_verify(argument: str) -> Reply:
    """RFC 5321 §3.5.3: 252 = "cannot VRFY but will accept"; nothing is disclosed.

    The client's text is echoed with control characters replaced (as Postfix's
    printable()), so a NUL or an escape sequence never comes back on the wire.
    """
    return Reply(252, "2.0.0", printable(argument))


def printable(text: str) -> str:
    """Replace control characters (C0, DEL) with '?' in text echoed from the client."""
    return "".join("?" if ord(ch) < 32 or ord(ch) == 127 else ch for ch in text)


def auth_failed(reason: str = "(reason unavailable)") -> Reply:
    """RFC 4954 §6 535 5.7.8; the reason is what Dovecot's auth service sends."""
    return Reply(535, "5.7.8", f"Error: authentication failed: {reason}")


def unsupported_option(option: str) -> Reply:
    """RFC 1869 §6: an ESMTP parameter we did not advertise (echoed like Postfix)."""
    return Reply(555, "5.5.4", f"Unsupported option: {option}")


def timeout_exceeded(hostname: str) -> Reply:
    """smtpd_timeout expired; RFC 5321 §4.5.3.2 lets the server close with 421."""
    return Reply(421, "4.4.2", f"{hostname} Error: timeout exceeded")


def too_many_errors(hostname: str) -> Reply:
    """smtpd_hard_error_limit reached; RFC 5321 §3.8 421 then close."""
    return Reply(421, "4.7.0", f"{hostname} Error: too many errors")


def bare_lf_in_command(hostname: str) -> Reply:
    """Postfix 3.9 smtpd_forbid_bare_newline=reject wording; 521 because we close
    (RFC 7504): a client that ends commands with bare LF cannot be framed safely."""
    return Reply(521, "5.5.2", f"{hostname} Error: bare <LF> received")


def challenge(payload_b64: str) -> Reply:
    """RFC 4954 §4: "334 " + base64 challenge (may be empty)."""
    return Reply(334, "", payload_b64)


OK = Reply(250, "2.0.0", "Ok")
SENDER_OK = Reply(250, "2.1.0", "Ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Ok")
START_MAIL_INPUT = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
BYE = Reply(221, "2.0.0", "Bye")
READY_TO_START_TLS = Reply(220, "2.0.0", "Ready to start TLS")
AUTH_SUCCESSFUL = Reply(235, "2.7.0", "Authentication successful")
AUTH_ABORTED = Reply(501, "5.7.0", "Authentication aborted")
AUTH_CANNOT_DECODE = Reply(501, "5.5.2", "Cannot decode response")
AUTH_SYNTAX = Reply(501, "5.5.4", "Syntax: AUTH mechanism")
AUTH_BAD_MECHANISM = auth_failed("Invalid authentication mechanism")
AUTH_NOT_ENABLED = Reply(503, "5.5.1", "Error: authentication not enabled")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Error: already authenticated")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
TLS_NOT_AVAILABLE = Reply(454, "4.7.0", "TLS not available due to local problem")
TLS_ALREADY_ACTIVE = Reply(554, "5.5.1", "Error: TLS already active")
STARTTLS_SYNTAX = Reply(501, "5.5.4", "Syntax: STARTTLS")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Error: command not implemented")
SEND_HELO_FIRST = Reply(503, "5.5.1", "Error: send HELO/EHLO first")
NESTED_MAIL = Reply(503, "5.5.1", "Error: nested MAIL command")
NEED_RCPT = Reply(503, "5.5.1", "Error: need RCPT command")
NEED_MAIL = Reply(503, "5.5.1", "Error: need MAIL command")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "Error: no valid recipients")
MAIL_IN_PROGRESS = Reply(503, "5.5.1", "Error: MAIL transaction in progress")
NOT_RECOGNIZED = Reply(502, "5.5.2", "Error: command not recognized")
BAD_SYNTAX = Reply(500, "5.5.2", "Error: bad syntax")
BAD_UTF8 = Reply(500, "5.5.2", "Error: bad UTF-8 syntax")
# RFC 5321 §4.5.3.1.4 "500 Line too long"; Postfix silently splits long lines instead.
LINE_TOO_LONG = Reply(500, "5.5.2", "Error: line too long")
HELO_SYNTAX = Reply(501, "", "Syntax: HELO hostname")
EHLO_SYNTAX = Reply(501, "", "Syntax: EHLO hostname")
MAIL_SYNTAX = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
RCPT_SYNTAX = Reply(501, "5.5.4", "Syntax: RCPT TO:<address>")
DATA_SYNTAX = Reply(501, "5.5.4", "Syntax: DATA")
RSET_SYNTAX = Reply(501, "5.5.4", "Syntax: RSET")
VRFY_SYNTAX = Reply(501, "5.5.4", "Syntax: VRFY address")
BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT = Reply(501, "5.1.3", "Bad recipient address syntax")
# RFC 6531 §3.4: a UTF-8 address without the SMTPUTF8 parameter.
UTF8_NOT_DECLARED = Reply(553, "5.6.7", "Must declare SMTPUTF8 to send unicode address")
BAD_SIZE = Reply(501, "5.5.4", "Bad message size syntax")
BAD_RET = Reply(501, "5.5.4", "Bad RET parameter syntax")
BAD_ENVID = Reply(501, "5.5.4", "Bad ENVID parameter syntax")
BAD_NOTIFY = Reply(501, "5.5.4", "Bad NOTIFY parameter syntax")
BAD_ORCPT = Reply(501, "5.5.4", "Bad ORCPT parameter syntax")
BAD_BODY = Reply(501, "5.5.4", "Bad BODY keyword syntax")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed limit")
# RFC 3030 CHUNKING, in Postfix 3.7's words. A BDAT whose count cannot be parsed ends
# the session (521): its chunk cannot be skipped, so nothing after it can be framed.
BDAT_SYNTAX = Reply(521, "5.5.4", "Syntax: BDAT count [LAST]")
NULL_BDAT = Reply(551, "5.7.1", "Null BDAT request")  # "BDAT 0" without LAST
CHUNK_TOO_BIG = Reply(552, "5.3.4", "Chunk exceeds message size limit")
DATA_AFTER_BDAT = Reply(503, "5.5.1", "Error: DATA after BDAT")
MAIL_AFTER_BDAT = Reply(503, "5.5.1", "Error: MAIL after BDAT")
RCPT_AFTER_BDAT = Reply(503, "5.5.1", "Error: RCPT after BDAT")
HEADER_TOO_BIG = Reply(552, "5.3.4", "Error: message header size exceeds limit")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Error: too many recipients")
# smtpd_forbid_bare_newline=reject answers 550 (smtpd_forbid_bare_newline_reject_code);
# mailroom keeps the session because its DATA framing never lost sync.
BARE_LF_IN_DATA = Reply(550, "5.5.2", "Error: bare <LF> received")
VRFY_DISABLED = Reply(502, "5.5.1", "VRFY command is disabled")
# ETRN (RFC 1985 §5): Postfix sends these without enhanced codes; RFC 2034 wants one
# on every reply once ENHANCEDSTATUSCODES is offered, so mailroom adds them.
ETRN_STARTED = Reply(250, "", "Queuing started")  # Postfix's words, without an enhanced code


def etrn_denied(domain: str) -> Reply:
    """ETRN for a domain outside fast_flush_domains (Postfix: FLUSH_STAT_DENY)."""
    return Reply(459, "", f"<{domain}>: service unavailable")
ETRN_UNABLE = Reply(458, "4.0.0", "Unable to queue messages")
ETRN_SYNTAX = Reply(500, "5.5.4", "Syntax: ETRN domain")
ETRN_BAD_DOMAIN = Reply(501, "5.5.4", "Error: invalid parameter syntax")

# -- answers the adapter gives to events (service state, not grammar) -------------------
TEMP_AUTH_FAILURE = Reply(454, "4.7.0", "Temporary authentication failure")
QUEUE_WRITE_ERROR = Reply(451, "4.3.0", "Error: queue file write error")
INSUFFICIENT_STORAGE = Reply(452, "4.3.1", "Insufficient system storage")


def too_many_connections(hostname: str, client_ip: str) -> Reply:
    """smtpd_client_connection_count_limit / _rate_limit exceeded (anvil)."""
    return Reply(421, "4.7.0", f"{hostname} Error: too many connections from {client_ip}")


def too_many_auth(client_ip: str) -> Reply:
    """smtpd_client_auth_rate_limit exceeded."""
    return Reply(450, "4.7.1", f"Error: too many AUTH commands from {client_ip}")


def service_unavailable(hostname: str) -> Reply:
    """An unexpected server-side failure ends the session politely (RFC 5321 §3.8)."""
    return Reply(421, "4.3.0", f"{hostname} Error: internal error, closing connection")


def too_many_sessions(hostname: str) -> Reply:
    """smtpd_client_limit reached: the server is busy, come back later."""
    return Reply(421, "4.3.2", f"{hostname} Error: too many sessions, try again later")


def shutting_down(hostname: str) -> Reply:
    return Reply(421, "4.3.2", f"{hostname} Service shutting down, closing transmission channel")
