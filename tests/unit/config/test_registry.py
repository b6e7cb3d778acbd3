"""The registry: every default is valid, and docs/parameters.md is generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroom.config import docs
from mailroom.config.maincf import ConfigError
from mailroom.config.registry import PARAMETERS
from mailroom.config.settings import Config

ROOT = Path(__file__).resolve().parents[3]


def test_every_default_parses(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("")
    config = Config.load(tmp_path)
    assert config.problems() == []
    assert config["message_size_limit"] == 10240000
    assert config["smtpd_timeout"] == 300
    assert config["maximal_queue_lifetime"] == 5 * 86400
    assert config.expanded("smtpd_banner").endswith(" ESMTP mailroom")


def test_postfix_defaults_are_postfixs() -> None:
    assert PARAMETERS["smtpd_relay_restrictions"].default == "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"
    assert PARAMETERS["smtpd_delay_reject"].default == "yes"
    assert PARAMETERS["minimal_backoff_time"].default == "300s"
    assert PARAMETERS["maximal_backoff_time"].default == "4000s"


def test_invalid_value_names_file_line_and_parameter(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("# x\nmessage_size_limit = ten\n")
    with pytest.raises(ConfigError) as info:
        Config.load(tmp_path)
    assert str(info.value) == f"{tmp_path / 'main.cf'}, line 2: message_size_limit = ten: bad numerical value"


def test_invalid_expanded_value_is_reported(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("x = 12z\nsmtpd_timeout = $x\n")
    with pytest.raises(ConfigError, match="line 2: smtpd_timeout = 12z: bad time value"):
        Config.load(tmp_path)


def test_docs_are_current() -> None:
    """docs/parameters.md must be regenerated (make docs) whenever the registry changes."""
    assert (ROOT / "docs" / "parameters.md").read_text() == docs.render()


def test_every_parameter_is_documented() -> None:
    for param in PARAMETERS.values():
        assert param.doc.strip(), param.name
        assert param.group, param.name
