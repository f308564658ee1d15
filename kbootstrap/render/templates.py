"""The jinja2 environment for text formats (units, haproxy, keepalived, TOML) and base YAML documents.

YAML and JSON documents are built as data and dumped, so every user value is escaped by construction;
text formats get a filter per format for values that come from the inventory.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml


def templates_dir() -> Path:
    """templates/ inside the installed wheel, else the repository's top-level templates/."""
    packaged = Path(str(resources.files("kbootstrap"))) / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


_SYSTEMD_PLAIN = re.compile(r"^[A-Za-z0-9_./:=,@+%$-]+$")  # % and $ are escaped before this test


def systemd_arg(value: object) -> str:
    """Quote one argv element for systemd's ExecStart parser (quotes, backslashes, % and $ specifiers)."""
    s = str(value)
    if "\n" in s or "\0" in s:
        raise ValueError(f"a command-line argument cannot contain a newline: {s!r}")
    s = s.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_PLAIN.match(s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_str(value: object) -> str:
    # A JSON string with ASCII escapes is a valid TOML basic string.
    return json.dumps(str(value), ensure_ascii=True)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["systemd_arg"] = systemd_arg
    env.filters["toml_str"] = toml_str
    return env


def render_text(template: str, **values: Any) -> bytes:
    text = environment().get_template(template).render(**values)
    return text.encode() if text.endswith("\n") else (text + "\n").encode()


@cache
def _base(name: str) -> Any:
    return yaml.safe_load((templates_dir() / name).read_text())


def base_document(name: str) -> Any:
    """A fresh copy of a base YAML document from templates/ (callers mutate it)."""
    return copy.deepcopy(_base(name))


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dump_yaml(doc: Any) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).encode()
