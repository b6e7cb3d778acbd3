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
        return "".join(line + "\r\n" for line in self.lines()).encode("utf-8", "replace")

    def __str__(self) -> str:
        """The one-line form Postfix writes into log lines."""
        return f"{self.code} {self.enhanced} {self.text}" if self.enhanced else f"{self.code} {self.text}"
