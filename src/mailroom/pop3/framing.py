"""Multi-line POP3 responses (RFC 1939 §3): CRLF line ends, dot-stuffing, the final ".".

Messages are stored with LF line ends (maildir.py); here they become CRLF, a line
starting with "." gets another ".", and TOP keeps the header and the first n body
lines (RFC 1939 §7). All of it is done with bytes.replace/split, C-level passes.
"""

from __future__ import annotations

TERMINATOR = b".\r\n"


def multiline(lines: list[str]) -> bytes:
    """Short listings (CAPA, LIST, UIDL): each line dot-stuffed, then the terminator."""
    out = bytearray()
    for line in lines:
        out += (("." + line) if line.startswith(".") else line).encode("utf-8") + b"\r\n"
    return bytes(out) + TERMINATOR


def message(data: bytes, body_lines: int | None = None) -> bytes:
    """A message for RETR (`body_lines` None) or TOP, ready for the wire."""
    text = data.replace(b"\r\n", b"\n") if b"\r" in data else data
    if body_lines is not None:
        if text.startswith(b"\n"):
            split = 1
        else:
            blank = text.find(b"\n\n")
            split = blank + 2 if blank >= 0 else len(text)
        head, body = text[:split], text[split:]
        parts = body.split(b"\n", body_lines)
        if len(parts) > body_lines:
            body = b"\n".join(parts[:body_lines]) + (b"\n" if body_lines else b"")
        text = head + body
    stuffed = text.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    out = stuffed.replace(b"\n", b"\r\n")
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out + TERMINATOR
