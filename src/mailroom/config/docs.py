"""Generate docs/parameters.md from the registry: `python -m mailroom.config.docs`."""

from __future__ import annotations

from mailroom.config.registry import GROUPS, PARAMETERS

HEADER = """# main.cf parameter reference

Generated from `src/mailroom/config/registry.py` by `make docs`; a test keeps it
current. Values use Postfix's syntax (see postconf(5)): lists separated by commas or
white space, times with units s m h d w, `$name` expansion. `postconf -d` prints the
same defaults.
"""


def render() -> str:
    out = [HEADER]
    for group in GROUPS:
        out.append(f"\n## {group}\n")
        out.append("| parameter | type | default | origin | description |")
        out.append("|---|---|---|---|---|")
        for param in PARAMETERS.values():
            if param.group != group:
                continue
            default = f"`{param.default}`" if param.default else "(empty)"
            note = param.doc + (" Needs a restart to change." if param.restart else "")
            default = default.replace("|", "\\|")
            out.append(f"| `{param.name}` | {param.kind.name} | {default} | {param.origin} | {note} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
