"""The command line as an administrator uses it (issue 2's acceptance list)."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import assert_one_line_error, run_mailroom


def test_init_demo_then_postconf_n_lists_the_demo_settings(demo_dir: Path) -> None:
    result = run_mailroom("-c", str(demo_dir), "postconf", "-n")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert "myhostname = mail.example.org" in lines
    assert "smtpd_tls_auth_only = yes" in lines
    assert "smtp_listen = 127.0.0.1:2525" in lines
    assert "smtpd_recipient_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination" in lines
    assert lines == sorted(lines)
    assert not any(line.startswith("message_size_limit") for line in lines)


def test_postconf_e_empty_mynetworks_then_h(fresh_demo: Path) -> None:
    assert run_mailroom("-c", str(fresh_demo), "postconf", "-e", "mynetworks=").code == 0
    result = run_mailroom("-c", str(fresh_demo), "postconf", "-h", "mynetworks")
    assert result.code == 0
    assert result.out == "\n"
    text = (fresh_demo / "main.cf").read_text()
    assert "# --- trust: clients in mynetworks may relay without authentication." in text
    assert [line for line in text.splitlines() if line.startswith("mynetworks")] == ["mynetworks = "]


def test_postconf_e_appends_new_names_at_the_end(fresh_demo: Path) -> None:
    assert run_mailroom("-c", str(fresh_demo), "postconf", "-e", "message_size_limit=20480000").code == 0
    assert (fresh_demo / "main.cf").read_text().splitlines()[-1] == "message_size_limit = 20480000"


@pytest.mark.parametrize(
    "item, fragment",
    [("mynetworks", "missing '='"), ("bad-name=1", "bad parameter name"), ("message_size_limit=big", "bad numerical value"), ("smtpd_timeout=5x", "bad time value")],
)
def test_postconf_e_refuses_malformed_input_and_leaves_main_cf(fresh_demo: Path, item: str, fragment: str) -> None:
    before = (fresh_demo / "main.cf").read_text()
    assert_one_line_error(run_mailroom("-c", str(fresh_demo), "postconf", "-e", item), fragment)
    assert (fresh_demo / "main.cf").read_text() == before


def test_postconf_d_shows_postfix_defaults(tmp_path: Path) -> None:
    result = run_mailroom("-c", str(tmp_path / "nowhere"), "postconf", "-d", "message_size_limit")
    assert result.code == 0
    assert result.out == "message_size_limit = 10240000\n"
    result = run_mailroom("-c", str(tmp_path / "nowhere"), "postconf", "-dh", "smtpd_relay_restrictions")
    assert result.out == "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination\n"


def test_postconf_unknown_name_warns(demo_dir: Path) -> None:
    result = run_mailroom("-c", str(demo_dir), "postconf", "no_such_parameter")
    assert result.code == 0
    assert result.err.strip() == "mailroom: warning: no_such_parameter: unknown parameter"


def test_postconf_x_expands(demo_dir: Path) -> None:
    result = run_mailroom("-c", str(demo_dir), "postconf", "-xh", "smtpd_banner")
    assert result.out == "mail.example.org ESMTP mailroom\n"


def test_demo_user_and_alias(demo_dir: Path) -> None:
    assert run_mailroom("-c", str(demo_dir), "user", "list").out.split() == ["john@example.org"]
    assert run_mailroom("-c", str(demo_dir), "domain", "list").out.split() == ["example.org"]
    assert "postmaster@example.org -> john@example.org" in run_mailroom("-c", str(demo_dir), "alias", "list").out


def test_demo_password_verifies(demo_dir: Path) -> None:
    from mailroom.config.settings import Config
    from mailroom.directory.sql import open_directory

    directory = open_directory(Config.load(demo_dir).expanded("directory_url"))
    try:
        assert directory.verify_password("john@example.org", "summersun")
        assert not directory.verify_password("john@example.org", "summersun2")
    finally:
        directory.close()


def test_init_makes_safe_permissions_and_certificate(demo_dir: Path) -> None:
    for name in ("data", "queue", "vmail"):
        assert stat.S_IMODE((demo_dir / name).stat().st_mode) == 0o700
    assert stat.S_IMODE((demo_dir / "tls" / "key.pem").stat().st_mode) == 0o600
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((demo_dir / "tls" / "cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"mail.example.org", "localhost"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}


def test_init_refuses_to_overwrite(demo_dir: Path) -> None:
    assert_one_line_error(run_mailroom("-c", str(demo_dir), "init"), "already exists")


def test_check_passes_on_a_fresh_init(demo_dir: Path) -> None:
    result = run_mailroom("-c", str(demo_dir), "check")
    assert result.code == 0, result.err


def test_check_reports_every_problem(fresh_demo: Path) -> None:
    with (fresh_demo / "main.cf").open("a") as handle:
        handle.write("message_size_limit = lots\nsmtpd_timeout = soon\n")
    result = run_mailroom("-c", str(fresh_demo), "check")
    assert result.code == 1
    assert "message_size_limit" in result.err and "smtpd_timeout" in result.err


def test_user_add_and_remove_cycle(fresh_demo: Path) -> None:
    c = ("-c", str(fresh_demo))
    assert run_mailroom(*c, "user", "add", "jane@example.org", "--password-stdin", "--quota", "1M", stdin="s3cret\n").code == 0
    listed = run_mailroom(*c, "user", "list", "example.org").out
    assert "jane@example.org\tquota=1048576" in listed
    assert run_mailroom(*c, "user", "passwd", "jane@example.org", "--password-stdin", stdin="other\n").code == 0
    assert run_mailroom(*c, "user", "remove", "jane@example.org").code == 0
    assert "jane@" not in run_mailroom(*c, "user", "list").out


def test_domain_remove_refused_with_users_unless_forced(fresh_demo: Path) -> None:
    c = ("-c", str(fresh_demo))
    assert_one_line_error(run_mailroom(*c, "domain", "remove", "example.org"))
    assert run_mailroom(*c, "domain", "remove", "example.org", "--force").code == 0
    assert run_mailroom(*c, "domain", "list").out == ""
    assert run_mailroom(*c, "user", "list").out == ""


# -- every command given bad input: one line, non-zero, no traceback -----------------------


def test_missing_config_dir(tmp_path: Path) -> None:
    assert_one_line_error(run_mailroom("-c", str(tmp_path / "missing"), "user", "list"), "does not exist")


def test_broken_main_cf(fresh_demo: Path) -> None:
    (fresh_demo / "main.cf").write_text("this line has no equals sign\n")
    assert_one_line_error(run_mailroom("-c", str(fresh_demo), "user", "list"), "line 1: missing '='")


def test_bad_address(demo_dir: Path) -> None:
    assert_one_line_error(run_mailroom("-c", str(demo_dir), "user", "add", "not-an-address", "--password-stdin", stdin="x\n"))


def test_unknown_domain(demo_dir: Path) -> None:
    assert_one_line_error(
        run_mailroom("-c", str(demo_dir), "user", "add", "lisa@example.com", "--password-stdin", stdin="x\n"), "example.com"
    )


def test_duplicate_user(demo_dir: Path) -> None:
    assert_one_line_error(
        run_mailroom("-c", str(demo_dir), "user", "add", "john@example.org", "--password-stdin", stdin="x\n"), "exists"
    )


def test_unreadable_database(fresh_demo: Path) -> None:
    (fresh_demo / "data" / "directory.db").write_bytes(b"this is not an sqlite database" * 100)
    assert_one_line_error(run_mailroom("-c", str(fresh_demo), "user", "list"))


def test_missing_database(fresh_demo: Path) -> None:
    (fresh_demo / "data" / "directory.db").unlink()
    assert_one_line_error(run_mailroom("-c", str(fresh_demo), "domain", "list"))


def test_unknown_command(demo_dir: Path) -> None:
    assert_one_line_error(run_mailroom("-c", str(demo_dir), "frobnicate"))


def test_reload_when_not_running(demo_dir: Path) -> None:
    assert_one_line_error(run_mailroom("-c", str(demo_dir), "reload"), "not running")


def test_pw_prints_a_verifiable_hash() -> None:
    result = run_mailroom("pw", "--password-stdin", stdin="summersun\n")
    assert result.code == 0
    hashed = result.out.strip()
    assert hashed.startswith("{ARGON2ID}$argon2id$")
    assert run_mailroom("pw", "-t", hashed, "-p", "summersun").code == 0
    assert_one_line_error(run_mailroom("pw", "-t", hashed, "-p", "summersun2"), "mismatch")


def test_pw_unknown_scheme() -> None:
    assert_one_line_error(run_mailroom("pw", "-s", "ROT13", "-p", "x"))


@pytest.mark.interop
def test_doveadm_sha512_crypt_hash_verifies_for_a_user(fresh_demo: Path) -> None:
    if not shutil.which("doveadm"):
        pytest.skip("doveadm not installed (Debian package dovecot-core)")
    hashed = subprocess.run(
        ["doveadm", "pw", "-s", "SHA512-CRYPT", "-p", "summersun"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert hashed.startswith("{SHA512-CRYPT}$6$")
    from mailroom.config.settings import Config
    from mailroom.directory.sql import open_directory

    directory = open_directory(Config.load(fresh_demo).expanded("directory_url"))
    try:
        directory.add_user("lisa@example.org", hashed)
        assert directory.verify_password("lisa@example.org", "summersun")
        assert not directory.verify_password("lisa@example.org", "summersun2")
    finally:
        directory.close()


def test_queue_list_right_after_init(fresh_demo: Path) -> None:
    result = run_mailroom("-c", str(fresh_demo), "queue", "list")
    assert result.code == 0 and result.out == "Mail queue is empty\n"


def test_mydomain_defaults_to_myhostname_minus_its_first_label(demo_dir: Path) -> None:
    assert run_mailroom("-c", str(demo_dir), "postconf", "-h", "mydomain").out == "example.org\n"
