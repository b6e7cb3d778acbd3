"""A loaded configuration: main.cf over the registry's defaults, expanded and typed.

`Config.load(dir)` reads CONFIG_DIR/main.cf; `config[name]` gives the typed value of
a known parameter. Every value is validated at load time, so a running server never
meets a bad value later; `problems()` lists all of them for `mailroom check`.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from mailroom.config.maincf import ConfigError, Definition, expand, read_file
from mailroom.config.registry import PARAMETERS, Parameter

MAIN_CF = "main.cf"


class Config:
    def __init__(self, config_dir: Path, definitions: list[Definition], filename: str) -> None:
        self.config_dir = config_dir
        self.filename = filename
        self.definitions = definitions
        self.explicit: dict[str, Definition] = {d.name: d for d in definitions}
        self._values: dict[str, Any] = {}

    @classmethod
    def load(cls, config_dir: Path, *, validate: bool = True) -> Config:
        """Read and (by default) fully validate CONFIG_DIR/main.cf; ConfigError on the first problem."""
        if not config_dir.is_dir():
            raise ConfigError(f"{config_dir}: configuration directory does not exist (run 'mailroom -c {config_dir} init')")
        path = config_dir / MAIN_CF
        config = cls(config_dir.resolve(), read_file(path), str(path))
        if validate:
            problems = config.problems()
            if problems:
                raise ConfigError(problems[0])
        return config

    # -- raw and expanded text ------------------------------------------------------------
    def raw(self, name: str) -> str | None:
        """The unexpanded value: main.cf's, else the default; None for unknown names."""
        if name == "config_directory":
            return str(self.config_dir)
        if name in self.explicit:
            return self.explicit[name].value
        param = PARAMETERS.get(name)
        if param is None:
            return None
        if name == "myhostname" and param.default == "localhost.localdomain":
            return default_hostname()
        if name == "mydomain":
            # Postfix: $myhostname minus its first component, else "localdomain".
            host = self.expanded("myhostname")
            return host.split(".", 1)[1] if host.count(".") >= 2 else param.default
        return param.default

    def expanded(self, name: str) -> str:
        raw = self.raw(name)
        if raw is None:
            raise KeyError(name)
        return expand(raw, self.raw)

    # -- typed values ---------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            param = PARAMETERS[name]
            self._values[name] = self._parse(param)
        return self._values[name]

    def path(self, name: str) -> Path:
        """A path parameter resolved against the configuration directory."""
        return self.config_dir / str(self[name])

    def _where(self, name: str) -> str:
        definition = self.explicit.get(name)
        if definition is None:
            return f"{self.filename}: default for {name}"
        return f"{self.filename}, line {definition.line}: {name}"

    def _parse(self, param: Parameter) -> Any:
        try:
            text = self.expanded(param.name)
        except ConfigError as exc:
            raise ConfigError(f"{self._where(param.name)}: {exc}") from None
        try:
            return param.kind.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{self._where(param.name)} = {text[:80]}: {exc}") from None

    def problems(self) -> list[str]:
        """Every invalid value, one line each, for `mailroom check` (empty = all good)."""
        found = []
        for name in PARAMETERS:
            try:
                self[name]
            except ConfigError as exc:
                found.append(str(exc))
        return found

    def unknown_names(self) -> list[Definition]:
        return [d for d in self.definitions if d.name not in PARAMETERS]


def default_hostname() -> str:
    """The host's fully-qualified name, as Postfix's myhostname default."""
    name = socket.getfqdn() or socket.gethostname() or "localhost"
    return name if "." in name else f"{name}.localdomain"
