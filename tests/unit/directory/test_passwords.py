"""Dovecot password schemes: real `doveadm pw` output verifies, and ours verifies in Dovecot."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroom.directory.passwords import (
    DEFAULT_SCHEME,
    SCHEMES,
    UnknownScheme,
    hash_password,
    verify_password,
)

PASSWORD = "summersun"
WRONG = "wintersun"  # differs early: DES-crypt reads only 8 characters
DOVEADM = shutil.which("doveadm")
needs_doveadm = pytest.mark.skipif(DOVEADM is None, reason="doveadm (dovecot-core) not installed")
DOVEADM_TIMEOUT_SECONDS = 30

# Produced by Dovecot 2.3.19.1's `doveadm pw -s SCHEME -p summersun` (Debian 12).
DOVEADM_HASHES = [
    "{SHA512-CRYPT}$6$duOIVKYnuhNuzLcD$rwML7fnLq9n1qK9873O5JwgB46GGWe1u099usKhN.8oxyd8K/x7QSauBcBe3wFab2zk5TOKXeIWUhwZsscHHA/",
    "{SHA512-CRYPT}$6$ZqaPb0ph/CwsqLyM$tanVomJR13Q4rb5xZ9rytGGlOIWvG1v1d2SFz72IIELD7s8uLWvhPuy9pomu33PeWUDMrtEfoPpjaGxZ/PwYc0",
    "{SHA512-CRYPT}$6$rounds=10000$d/R7ELvh55R325Pg$szw3D2.P2xEDFMlCeOqXuv1M5KRiuo3KmK14s5nHBpnQCz1tCUC/eE5dZba2NxQM51fIdux65vFvQTfWqeCsL0",
    "{SHA256-CRYPT}$5$z/mP/7x8I.6cH3Ow$VSUstAMvj1ybN1FLtVdyEQNX52JerKh0rQaUf5Dnfo5",
    "{BLF-CRYPT}$2y$05$6yxDe9AycIc.SVJZqN60OOWwGnavfbxHglsqzvsSJjwg9JEWyubPC",
    "{BLF-CRYPT}$2y$10$DBmDYT1WwkgKwpN.EbXX6.xb5fj0i6.K7aCWlRkM8g68TCFvzZdB2",
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$Lu7tuc4glJbuo9pNALUefw$MPArObbU2gSauM0tH10kuExLdMGZVi+pnRsoOnYnQo8",
    "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$YDoyHXyI/vH3jNbW4Rciow$V5YFyuZJAf+LJMELA+PjYRSBg6JcPKqOzM+wU8D2ix8",
    "{SSHA512}ARFCijBD3bnJmsmlX2nwzLTLkJYJ1UbVbrSNuhh758Lr+nsDwf9YJ5hxvPIdfk7h6yMHEOs4ykqZ6JRyiMFtJXRH7lQ=",
    "{SSHA256}daOrAQItlAA+SJ6dUGCUwcee65KWhLSJ87okaJyrJOve0KL0",
    "{SSHA}n0kq+ah1x2Ft8UZLoINC0Ughf6E23Qdm",
    "{SHA512}n/efm01oTCJXNxixfaaoMybEkhdoZ+t/XVUdC4h1+QlNvpYsITRnL7ol9Eajrb9L1zEYRPlwpRWd45/1F5iDvg==",
    "{SHA256}XD3JqG8hnaiYvapXzkcbfAOhuVxX1S9GVOt3fBh1omA=",
    "{SHA}Ap5TVNW58HqFzaJttpTA9LG+U+8=",
    "{SHA1}Ap5TVNW58HqFzaJttpTA9LG+U+8=",
    "{PLAIN}summersun",
    "{CLEARTEXT}summersun",
    "{CLEAR}summersun",
    "{CRYPT}$2y$05$PFUaL6QasFycJyEyPT2UpOcnsmTCdmIcXtiC6M0jNEZB9PHyJKv12",
    "{DES-CRYPT}QyCErp178x7UE",
    "{MD5-CRYPT}$1$Ie4H5oOF$ItBuNuX9mfQCrzVaCnn1g0",
    "{MD5}$1$c1qU0BLR$tHlYyjy/pm6mnvqtkSFLO1",
    "{PLAIN-MD5}14cbfb845af1f030e372b1cb9275e6dd",
    "{LDAP-MD5}FMv7hFrx8DDjcrHLknXm3Q==",
    "{SMD5}8txaTXPxcy1jsEuE5CiNfW68ITw=",
    "{PBKDF2}$1$dwyf6ffYk.sxXbwd$5000$e838e78084dee409ca48bb1f01a79a219e0219b5",
    "{SHA512.HEX}9ff79f9b4d684c22573718b17da6a83326c492176867eb7f5d551d0b8875f9094dbe962c2134672fba25f446a3adbf4bd7311844f970a5159de39ff5179883be",
    "{SHA256.HEX}5c3dc9a86f219da898bdaa57ce471b7c03a1b95c57d52f4654eb777c1875a260",
    "{SHA.HEX}029e5354d5b9f07a85cda26db694c0f4b1be53ef",
    "{SSHA512.HEX}21bcba990895a2ef1a60154815c55896139be08c3f5e17185beccf1b5226536480e2f2379b0800cc5ad01dc23dfc78dbcfabf4bfdd10491b9d996aa8642fab881d49fccd",
    "{SSHA256.HEX}a18383de2dc60abe3722d6d02c8ecc236d812a97e0c873314ede7f02a6aded3ad9b361af",
    "{SSHA.HEX}089abb1122e83bd11f883ba6952fad0ff202b3f5f58ff24c",
    "{SHA512.B64}n/efm01oTCJXNxixfaaoMybEkhdoZ+t/XVUdC4h1+QlNvpYsITRnL7ol9Eajrb9L1zEYRPlwpRWd45/1F5iDvg==",
    "{PLAIN.B64}c3VtbWVyc3Vu",
    "{PLAIN.HEX}73756d6d657273756e",
    "{PLAIN-MD5.B64}FMv7hFrx8DDjcrHLknXm3Q==",
    "{SSHA256.B64}wptbzpLkFkcNyLLHrMvS1gi5rcfQhJF2msqi9Oij7MlqW/O1",
]

# The same tool, password "Grüße €": passwords are UTF-8 bytes on both sides.
UNICODE_PASSWORD = "Grüße €"
DOVEADM_UNICODE_HASHES = [
    "{PLAIN}Grüße €",
    "{SHA512-CRYPT}$6$yjvJFMtH9BK31yPG$DJ.t.v.4As2n6T4TC/.LI3sDd6JK7w9VYUfzSGWlbTSxs5JYA3wJ2xS3NWw3r1gkQvL.ma4ilzAldmxCugJq6.",
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$3v7UNfLT+Prl3EguJVeWdg$44AmdBWz3DdVBd5t39R881r+HVyDvXsZESASo4ijugo",
    "{SSHA512}nheyytXX19ZDk2fYY1bG1VH22y6zHWT389V0//9rhNtSfOEZaI4sLbSTLfnbft0mLEJiRCFXk8o31gX3aY7A816c2zE=",
    "{BLF-CRYPT}$2y$05$xhXm.0kBvH6HXoMXwokPbOND7yIEE1IWBTAuhgOEELGacEGnRjXzC",
]

# Schemes doveadm can write that mailroom reads (CRAM-MD5, DIGEST-MD5, SCRAM are
# challenge-response secrets, not login hashes).
LIVE_SCHEMES = [
    "SHA512-CRYPT",
    "SHA256-CRYPT",
    "BLF-CRYPT",
    "ARGON2ID",
    "ARGON2I",
    "SSHA512",
    "SSHA256",
    "SSHA",
    "SHA512",
    "SHA256",
    "SHA",
    "SHA1",
    "PLAIN",
    "CLEARTEXT",
    "CRYPT",
    "DES-CRYPT",
    "MD5-CRYPT",
    "MD5",
    "PLAIN-MD5",
    "LDAP-MD5",
    "SMD5",
    "PBKDF2",
    "SHA512.HEX",
    "SSHA512.HEX",
    "SHA256.b64",
    "PLAIN.HEX",
    "PLAIN.b64",
]


def _doveadm(*args: str) -> subprocess.CompletedProcess[str]:
    assert DOVEADM is not None
    return subprocess.run(
        [DOVEADM, *args], capture_output=True, text=True, timeout=DOVEADM_TIMEOUT_SECONDS
    )


# -- real Dovecot hashes ---------------------------------------------------------------


@pytest.mark.parametrize("stored", DOVEADM_HASHES)
def test_doveadm_fixture_verifies(stored: str) -> None:
    assert verify_password(stored, PASSWORD)


@pytest.mark.parametrize("stored", DOVEADM_HASHES)
def test_doveadm_fixture_rejects_wrong_password(stored: str) -> None:
    assert not verify_password(stored, WRONG)
    assert not verify_password(stored, "")
    assert not verify_password(stored, PASSWORD.upper())


@pytest.mark.parametrize("stored", DOVEADM_UNICODE_HASHES)
def test_doveadm_unicode_fixture(stored: str) -> None:
    assert verify_password(stored, UNICODE_PASSWORD)
    assert not verify_password(stored, "Grusse €")


@pytest.mark.parametrize(
    "stored",
    [
        "$6$ZqaPb0ph/CwsqLyM$tanVomJR13Q4rb5xZ9rytGGlOIWvG1v1d2SFz72IIELD7s8uLWvhPuy9pomu33PeWUDMrtEfoPpjaGxZ/PwYc0",
        "$2y$05$6yxDe9AycIc.SVJZqN60OOWwGnavfbxHglsqzvsSJjwg9JEWyubPC",
        "$1$Ie4H5oOF$ItBuNuX9mfQCrzVaCnn1g0",
        "QyCErp178x7UE",
    ],
)
def test_no_prefix_means_default_pass_scheme_crypt(stored: str) -> None:
    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, WRONG)


def test_no_prefix_is_not_plaintext() -> None:
    assert not verify_password("summersun", PASSWORD)


def test_scheme_name_is_case_insensitive() -> None:
    assert verify_password("{sha512-crypt}" + DOVEADM_HASHES[0].split("}", 1)[1], PASSWORD)
    assert verify_password("{ssha256.b64}" + DOVEADM_HASHES[-1].split("}", 1)[1], PASSWORD)


def test_crypt_schemes_follow_the_data_like_crypt3() -> None:
    """Dovecot hands all *-CRYPT schemes to crypt(3), which reads the $id$."""
    bcrypt_data = DOVEADM_HASHES[4].split("}", 1)[1]
    assert verify_password("{SHA512-CRYPT}" + bcrypt_data, PASSWORD)
    assert verify_password("{BLF-CRYPT}" + bcrypt_data.replace("$2y$", "$2b$"), PASSWORD)
    assert verify_password("{BLF-CRYPT}" + bcrypt_data.replace("$2y$", "$2a$"), PASSWORD)


def test_unsalted_digest_guesses_hex_like_dovecot() -> None:
    hex_digest = hashlib.sha256(PASSWORD.encode()).hexdigest()
    assert verify_password("{SHA256}" + hex_digest, PASSWORD)
    assert not verify_password("{SHA256}" + hex_digest, WRONG)


def test_base64_padding_is_optional() -> None:
    assert verify_password("{SHA256}XD3JqG8hnaiYvapXzkcbfAOhuVxX1S9GVOt3fBh1omA", PASSWORD)


# -- malformed and unknown --------------------------------------------------------------


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "{}",
        "{SHA512-CRYPT}",
        "{SHA512-CRYPT}$6$",
        "{SHA512-CRYPT}$6$salt$tooshort",
        "{SHA512-CRYPT}$6$rounds=abc$salt$x",
        "{BLF-CRYPT}$2y$05$short",
        "{BLF-CRYPT}$2y$99$6yxDe9AycIc.SVJZqN60OOWwGnavfbxHglsqzvsSJjwg9JEWyubPC",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$!!!$???",
        "{ARGON2ID}not-argon",
        "{ARGON2I}$argon2id$v=19$m=65536$broken",
        "{SSHA512}not base64!",
        "{SSHA512}AAAA",
        "{SSHA}" + base64.b64encode(b"x" * 20).decode(),  # digest with no salt
        "{SHA512}AAAA",
        "{SHA256.HEX}zz",
        "{SHA256.HEX}abc",
        "{PLAIN.HEX}not-hex",
        "{PLAIN.ROT13}summersun",
        "{PBKDF2}$1$salt$0$00",
        "{PBKDF2}$1$salt$999999999999$00",
        "{PBKDF2}$2$salt$5000$00",
        "{PBKDF2}$1$salt$5000$nothex",
        "{CRYPT}$y$j9T$abc$def",
        "{CRYPT}summersun",
        "{NOPE}summersun",
        "{CRAM-MD5}4e3771a1a672bdc8bd8db861c1f2a29a8e043c99300ca203a1a92bbea7506691",
        "{PLAIN",
        "\x00\xff{PLAIN}summersun",
    ],
)
def test_malformed_or_unknown_is_false_not_an_exception(stored: str) -> None:
    assert verify_password(stored, PASSWORD) is False


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(
        [
            "",
            "{SHA512-CRYPT}",
            "{BLF-CRYPT}",
            "{ARGON2ID}",
            "{SSHA512}",
            "{SHA256.HEX}",
            "{PLAIN.B64}",
            "{PBKDF2}",
            "{CRYPT}",
            "{MD5-CRYPT}",
            "{DES-CRYPT}",
            "{SMD5}",
        ]
    ),
    data=st.text(max_size=120),
    password=st.text(max_size=80),
)
def test_any_input_gives_a_bool(scheme: str, data: str, password: str) -> None:
    assert verify_password(scheme + data, password) in (True, False)


def test_password_with_nul_or_surrogate_is_false() -> None:
    assert verify_password(DOVEADM_HASHES[4], "summer\x00sun") is False
    assert verify_password("{PLAIN}summersun", "summersun\udcff") is False


# -- our own hashes ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_round_trip(scheme: str) -> None:
    stored = hash_password(PASSWORD, scheme)
    assert stored.startswith("{" + scheme + "}")
    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, WRONG)
    assert not verify_password(stored, "")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_round_trip_unicode(scheme: str) -> None:
    assert verify_password(hash_password(UNICODE_PASSWORD, scheme), UNICODE_PASSWORD)


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s != "PLAIN"])
def test_hashes_are_salted(scheme: str) -> None:
    assert hash_password(PASSWORD, scheme) != hash_password(PASSWORD, scheme)


def test_default_is_argon2id_with_dovecot_parameters() -> None:
    stored = hash_password(PASSWORD)
    assert DEFAULT_SCHEME == "ARGON2ID"
    assert stored.startswith("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$")


def test_argon2i_uses_dovecot_parameters() -> None:
    assert hash_password(PASSWORD, "ARGON2I").startswith("{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$")


def test_blf_crypt_is_2y_with_cost_at_least_10() -> None:
    stored = hash_password(PASSWORD, "BLF-CRYPT")
    assert stored.startswith("{BLF-CRYPT}$2y$")
    assert int(stored.split("$")[2]) >= 10


def test_scheme_argument_is_case_insensitive() -> None:
    assert hash_password(PASSWORD, "ssha512").startswith("{SSHA512}")


@pytest.mark.parametrize("scheme", ["MD5", "SHA", "DES-CRYPT", "CRAM-MD5", "bogus", ""])
def test_unknown_or_weak_scheme_is_refused(scheme: str) -> None:
    with pytest.raises(UnknownScheme):
        hash_password(PASSWORD, scheme)
    assert issubclass(UnknownScheme, ValueError)


# -- live Dovecot, both directions --------------------------------------------------------


@needs_doveadm
@pytest.mark.interop
@pytest.mark.parametrize("scheme", LIVE_SCHEMES)
def test_fresh_doveadm_hash_verifies(scheme: str) -> None:
    made = _doveadm("pw", "-s", scheme, "-p", PASSWORD)
    assert made.returncode == 0, made.stderr
    stored = made.stdout.strip()
    assert verify_password(stored, PASSWORD), stored
    assert not verify_password(stored, WRONG), stored


@needs_doveadm
@pytest.mark.interop
@pytest.mark.parametrize("scheme", SCHEMES)
def test_dovecot_accepts_our_hash(scheme: str) -> None:
    stored = hash_password(PASSWORD, scheme)
    good = _doveadm("pw", "-t", stored, "-p", PASSWORD)
    assert good.returncode == 0, f"{stored}: {good.stderr}"
    bad = _doveadm("pw", "-t", stored, "-p", WRONG)
    assert bad.returncode != 0, stored
