"""Dovecot password schemes, so an ISPmail database's `password` column works unchanged.

A stored hash looks like `{SCHEME}data` or `{SCHEME.ENC}data` (ENC = HEX or B64/BASE64),
exactly as `doveadm pw` writes it. A hash without a `{SCHEME}` prefix is read the way
Dovecot reads it with its default `default_pass_scheme = CRYPT`: crypt(3) picks the
algorithm from the `$id$` prefix. Like Dovecot (which hands every *-CRYPT scheme to
crypt(3)), the *-CRYPT schemes verify whatever crypt format the data carries.

`verify_password` never raises: a malformed hash or an unknown scheme is simply a
failed login, so a bad row cannot turn into a server error. Comparisons of raw digests
use `hmac.compare_digest`; bcrypt, argon2 and passlib compare in constant time too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import argon2
import bcrypt
from argon2.exceptions import Argon2Error, InvalidHashError
from passlib.hash import des_crypt, md5_crypt, sha256_crypt, sha512_crypt

__all__ = [
    "DEFAULT_PASS_SCHEME",
    "DEFAULT_SCHEME",
    "SCHEMES",
    "UnknownScheme",
    "hash_password",
    "verify_password",
]

# What `mailroom pw` and `user add` write when no scheme is asked for: memory-hard.
DEFAULT_SCHEME = "ARGON2ID"
# Dovecot's default_pass_scheme: used for a stored hash that has no {SCHEME} prefix.
DEFAULT_PASS_SCHEME = "CRYPT"

# Schemes hash_password() can write (`mailroom pw --scheme`); unsalted digests, MD5 and
# DES stay verify-only, since nobody should create new ones.
SCHEMES: tuple[str, ...] = (
    "ARGON2ID",
    "ARGON2I",
    "BLF-CRYPT",
    "SHA512-CRYPT",
    "SHA256-CRYPT",
    "SSHA512",
    "SSHA256",
    "PLAIN",
)

# Dovecot 2.3's ARGON2ID parameters (libsodium's "interactive" limits for argon2id).
ARGON2ID_MEMORY_KIB = 65536
ARGON2ID_TIME_COST = 3
# Dovecot 2.3's ARGON2I parameters (libsodium's "interactive" limits for argon2i).
ARGON2I_MEMORY_KIB = 32768
ARGON2I_TIME_COST = 4
ARGON2_PARALLELISM = 1  # libsodium always uses one lane
ARGON2_HASH_BYTES = 32
ARGON2_SALT_BYTES = 16
# bcrypt cost: doveadm's own default is 5, far too cheap today; 10 is the usual floor.
BCRYPT_COST = 10
# bcrypt only reads this many bytes of the password; crypt(3) (thus Dovecot) truncates.
BCRYPT_MAX_PASSWORD_BYTES = 72
# SHA-crypt rounds: glibc's default is 5000; more slows offline guessing, and glibc
# (thus Dovecot) reads any `rounds=` up to 999,999,999.
SHA_CRYPT_ROUNDS = 100_000
# Salt for the SSHA* schemes: Dovecot writes 4 bytes and reads any length; use more.
SSHA_SALT_BYTES = 16
# Dovecot's PBKDF2 scheme is `$1$salt$rounds$hex`; refuse absurd round counts so a
# hostile row cannot stall a login worker.
PBKDF2_MAX_ROUNDS = 10_000_000

_HEX_ENCODINGS = frozenset({"HEX"})
_B64_ENCODINGS = frozenset({"B64", "BASE64"})
_SCHEME_RE = re.compile(r"\{([A-Za-z0-9.-]+)\}")
_DES_CRYPT_RE = re.compile(r"[./0-9A-Za-z]{13}")


class UnknownScheme(ValueError):
    """hash_password was asked for a scheme it cannot (or will not) write."""


@dataclass(frozen=True, slots=True)
class _Digest:
    """A plain digest scheme: H(password) or, salted, H(password + salt) + salt."""

    new: Callable[[], hashlib._Hash]
    salted: bool
    default_hex: bool  # PLAIN-MD5 is hex by default; the others base64


_DIGESTS: dict[str, _Digest] = {
    "SHA": _Digest(hashlib.sha1, False, False),
    "SHA1": _Digest(hashlib.sha1, False, False),
    "SHA256": _Digest(hashlib.sha256, False, False),
    "SHA512": _Digest(hashlib.sha512, False, False),
    "SSHA": _Digest(hashlib.sha1, True, False),
    "SSHA256": _Digest(hashlib.sha256, True, False),
    "SSHA512": _Digest(hashlib.sha512, True, False),
    "PLAIN-MD5": _Digest(hashlib.md5, False, True),
    "LDAP-MD5": _Digest(hashlib.md5, False, False),
    "SMD5": _Digest(hashlib.md5, True, False),
}
_PLAIN = frozenset({"PLAIN", "CLEAR", "CLEARTEXT"})
# Dovecot passes all of these to crypt(3); MD5 is Dovecot's alias of MD5-CRYPT.
_CRYPT = frozenset(
    {"CRYPT", "DES-CRYPT", "MD5", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT"}
)
_ARGON2 = frozenset({"ARGON2I", "ARGON2ID"})


# -- verification -------------------------------------------------------------------


def verify_password(stored: str, password: str) -> bool:
    """True when `password` matches the Dovecot-style `stored` hash; never raises."""
    try:
        scheme, encoding, data = _split(stored)
        secret = password.encode("utf-8")
        return _verify(scheme, encoding, data, secret)
    except (ValueError, TypeError, UnicodeError, binascii.Error, Argon2Error):
        return False


def _split(stored: str) -> tuple[str, str | None, str]:
    """`{SCHEME.ENC}data` -> (SCHEME, ENC or None, data); no prefix -> default scheme."""
    match = _SCHEME_RE.match(stored)
    if match is None:
        return DEFAULT_PASS_SCHEME, None, stored
    name = match.group(1).upper()
    data = stored[match.end() :]
    scheme, dot, encoding = name.rpartition(".")
    if not dot:
        return name, None, data
    if encoding not in _HEX_ENCODINGS | _B64_ENCODINGS:
        raise ValueError("unknown encoding")
    return scheme, encoding, data


def _verify(scheme: str, encoding: str | None, data: str, secret: bytes) -> bool:
    if scheme in _CRYPT and encoding is None:
        return _verify_crypt(data, secret)
    if scheme in _ARGON2 and encoding is None:
        return _verify_argon2(data, secret)
    if scheme == "PBKDF2" and encoding is None:
        return _verify_pbkdf2(data, secret)
    if scheme in _PLAIN:
        raw = data.encode("utf-8") if encoding is None else _decode(data, encoding)
        return hmac.compare_digest(raw, secret)
    digest = _DIGESTS.get(scheme)
    if digest is None:
        return False
    return _verify_digest(digest, encoding, data, secret)


def _verify_crypt(data: str, secret: bytes) -> bool:
    """crypt(3) as glibc/libxcrypt does it: the `$id$` prefix names the algorithm."""
    if data.startswith(("$2a$", "$2b$", "$2y$")):
        # The bcrypt module knows $2a$/$2b$; $2y$ is the same algorithm (PHP's name).
        normalised = "$2b$" + data[4:]
        return bcrypt.checkpw(secret[:BCRYPT_MAX_PASSWORD_BYTES], normalised.encode("ascii"))
    if data.startswith("$1$"):
        return bool(md5_crypt.verify(secret, data))
    if data.startswith("$5$"):
        return bool(sha256_crypt.verify(secret, data))
    if data.startswith("$6$"):
        return bool(sha512_crypt.verify(secret, data))
    if _DES_CRYPT_RE.fullmatch(data):
        return bool(des_crypt.verify(secret, data))
    return False


def _verify_argon2(data: str, secret: bytes) -> bool:
    """Dovecot's ARGON2I/ARGON2ID use libsodium, which reads either variant's string."""
    if not data.startswith(("$argon2i$", "$argon2id$")):
        return False
    try:
        return bool(argon2.PasswordHasher().verify(data, secret))
    except InvalidHashError:
        return False


def _verify_pbkdf2(data: str, secret: bytes) -> bool:
    """Dovecot's PBKDF2: `$1$salt$rounds$hex`, PBKDF2-HMAC-SHA1 with 20-byte output."""
    parts = data.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "1" or not parts[3].isdigit():
        return False
    rounds = int(parts[3])
    if not 0 < rounds <= PBKDF2_MAX_ROUNDS:
        return False
    expected = bytes.fromhex(parts[4])
    derived = hashlib.pbkdf2_hmac("sha1", secret, parts[2].encode("utf-8"), rounds)
    return hmac.compare_digest(derived, expected)


def _verify_digest(digest: _Digest, encoding: str | None, data: str, secret: bytes) -> bool:
    size = digest.new().digest_size
    if encoding is None and not digest.salted:
        # Dovecot guesses: exactly twice the digest size in characters means hex.
        encoding = "HEX" if len(data) == size * 2 else "B64"
    elif encoding is None:
        encoding = "HEX" if digest.default_hex else "B64"
    raw = _decode(data, encoding)
    if digest.salted:
        if len(raw) <= size:
            return False
        expected, salt = raw[:size], raw[size:]
    else:
        if len(raw) != size:
            return False
        expected, salt = raw, b""
    hasher = digest.new()
    hasher.update(secret + salt)
    return hmac.compare_digest(hasher.digest(), expected)


def _decode(data: str, encoding: str) -> bytes:
    """Strict hex or base64 (padding optional, as Dovecot accepts); ValueError otherwise."""
    if encoding in _HEX_ENCODINGS:
        return bytes.fromhex(data)
    padded = data + "=" * (-len(data) % 4)
    return base64.b64decode(padded.encode("ascii"), validate=True)


# -- hashing ------------------------------------------------------------------------


def hash_password(password: str, scheme: str = DEFAULT_SCHEME) -> str:
    """A `{SCHEME}...` string that both mailroom and Dovecot's auth accept."""
    name = scheme.upper()
    if name not in SCHEMES:
        raise UnknownScheme(f"unknown password scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    secret = password.encode("utf-8")
    return "{" + name + "}" + _HASHERS[name](secret)


def _hash_argon2id(secret: bytes) -> str:
    return _argon2_hasher(argon2.Type.ID, ARGON2ID_TIME_COST, ARGON2ID_MEMORY_KIB).hash(secret)


def _hash_argon2i(secret: bytes) -> str:
    return _argon2_hasher(argon2.Type.I, ARGON2I_TIME_COST, ARGON2I_MEMORY_KIB).hash(secret)


def _argon2_hasher(kind: argon2.Type, time_cost: int, memory_kib: int) -> argon2.PasswordHasher:
    return argon2.PasswordHasher(
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=ARGON2_PARALLELISM,
        hash_len=ARGON2_HASH_BYTES,
        salt_len=ARGON2_SALT_BYTES,
        type=kind,
    )


def _hash_bcrypt(secret: bytes) -> str:
    """`$2y$` like doveadm writes; bcrypt's $2b$ is byte-for-byte the same algorithm."""
    salt = bcrypt.gensalt(rounds=BCRYPT_COST, prefix=b"2b")
    hashed = bcrypt.hashpw(secret[:BCRYPT_MAX_PASSWORD_BYTES], salt).decode("ascii")
    return "$2y$" + hashed[4:]


def _hash_sha512_crypt(secret: bytes) -> str:
    return str(sha512_crypt.using(rounds=SHA_CRYPT_ROUNDS).hash(secret))


def _hash_sha256_crypt(secret: bytes) -> str:
    return str(sha256_crypt.using(rounds=SHA_CRYPT_ROUNDS).hash(secret))


def _ssha(new: Callable[[], hashlib._Hash]) -> Callable[[bytes], str]:
    def make(secret: bytes) -> str:
        salt = secrets.token_bytes(SSHA_SALT_BYTES)
        hasher = new()
        hasher.update(secret + salt)
        return base64.b64encode(hasher.digest() + salt).decode("ascii")

    return make


def _plain(secret: bytes) -> str:
    return secret.decode("utf-8")


_HASHERS: dict[str, Callable[[bytes], str]] = {
    "ARGON2ID": _hash_argon2id,
    "ARGON2I": _hash_argon2i,
    "BLF-CRYPT": _hash_bcrypt,
    "SHA512-CRYPT": _hash_sha512_crypt,
    "SHA256-CRYPT": _hash_sha256_crypt,
    "SSHA512": _ssha(hashlib.sha512),
    "SSHA256": _ssha(hashlib.sha256),
    "PLAIN": _plain,
}
