"""What the restriction evaluator may know about a session at the moment it judges it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class PolicyContext:
    client_address: str  # "127.0.0.1" or "::1" (no brackets)
    client_name: str = "unknown"  # verified reverse name, or "unknown"
    helo: str = ""
    protocol: str = "SMTP"
    tls_active: bool = False
    sasl_username: str = ""  # "" = not authenticated
    sasl_method: str = ""
    sender: str | None = None  # None = no MAIL yet; "" = null sender
    recipient: str | None = None
    etrn_domain: str | None = None
    listener: str = "smtp"  # smtp | submission | submissions
