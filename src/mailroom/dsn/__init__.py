"""Delivery status notifications (RFC 3461, RFC 3464): bounces, delay warnings, success notices.

Pure message building only; the queue manager decides when to call it and enqueues
the result with the null sender.
"""

from mailroom.dsn.report import (
    BOUNCE_SIZE_LIMIT,
    Notification,
    RecipientReport,
    build_double_bounce,
    build_notification,
    diagnostic_from_reason,
    reports_from_envelope,
    wants_notice,
)

__all__ = [
    "BOUNCE_SIZE_LIMIT",
    "Notification",
    "RecipientReport",
    "build_double_bounce",
    "build_notification",
    "diagnostic_from_reason",
    "reports_from_envelope",
    "wants_notice",
]
