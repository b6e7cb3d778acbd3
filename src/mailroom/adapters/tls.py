"""Server TLS contexts: TLS 1.2 or newer, forward-secret AEAD ciphers only, swapped on SIGHUP.

`TlsHolder.context` is read at each handshake, so a reload with a new certificate
takes effect for the next connection without touching listening sockets.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

# TLS 1.2 suites: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only, the
# "intermediate" profile administrators check with testssl.sh. TLS 1.3 suites are
# all AEAD and are left to OpenSSL's defaults.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS:!SHA1:!SHA256:!SHA384"

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class TlsConfigError(Exception):
    pass


def minimum_version(protocols: str) -> ssl.TLSVersion:
    """Read smtpd_tls_protocols; mailroom accepts only `>=TLSv1.2` or `>=TLSv1.3` forms."""
    spec = protocols.replace(" ", "")
    if spec.startswith(">="):
        version = _VERSIONS.get(spec[2:])
        if version is not None:
            return version
    # Postfix's "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1" style: the floor is what is not excluded.
    excluded = {item.lstrip("!") for item in spec.split(",") if item.startswith("!")}
    if {"SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2"} <= excluded:
        return ssl.TLSVersion.TLSv1_3
    return ssl.TLSVersion.TLSv1_2


def server_context(cert_file: Path, key_file: Path, protocols: str = ">=TLSv1.2") -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = minimum_version(protocols)
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    context.options |= getattr(ssl, "OP_NO_TICKET", 0)
    try:
        context.load_cert_chain(cert_file, key_file)
    except FileNotFoundError as exc:
        raise TlsConfigError(f"{exc.filename}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(f"cannot load certificate {cert_file} / key {key_file}: {getattr(exc, 'reason', None) or exc}") from None
    return context


@dataclass
class TlsHolder:
    """The current server context; None when TLS is off or not configured."""

    context: ssl.SSLContext | None = None


def describe(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> tuple[str, str]:
    """(log text, Received-header text) for a finished handshake, in Postfix's words."""
    if ssl_object is None:
        return "", ""
    version = ssl_object.version() or "TLS"
    cipher = ssl_object.cipher()
    name, bits = (cipher[0], cipher[2]) if cipher else ("unknown", 0)
    log = f"{version} with cipher {name} ({bits}/{bits} bits)"
    return log, f"(using {log})"
