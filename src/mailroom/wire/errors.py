"""Protocol errors that say who broke the protocol, as h11 does.

A remote error is the peer's fault (log at info, answer with a reply); a local
error is a bug in the code driving a protocol core (log at error, fix the caller).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class: the session cannot continue as asked."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class LocalProtocolError(ProtocolError):
    """The adapter drove the core wrongly (e.g. answered an event twice)."""
