"""An inventory's component_config checked against the upstream Go types, before any host is touched.

`component_config.kubelet` and `component_config.kube-proxy` are merged into the KubeletConfiguration and
KubeProxyConfiguration kbootstrap writes; a field those types lack, or a value of the wrong type, used to reach the
host and fail only when the kubelet started. schemas/<minor>/ holds each release's field types, read from the Go
types by `strictcheck -schema` (tests/tools/strictcheck/gen-schemas.sh; a test keeps them equal). The checks are
those of the API machinery's strict decoding: unknown or wrongly-cased fields, JSON types, integer ranges,
finite numbers, Go durations and Kubernetes quantities.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from importlib import resources
from typing import Any

from kbootstrap.errors import Problem

SCHEMAS = {"kubelet": "kubelet.json", "kube-proxy": "kube-proxy.json"}
KINDS = {"kubelet": "KubeletConfiguration", "kube-proxy": "KubeProxyConfiguration"}
# Go's time.ParseDuration: a sign, then one or more decimal numbers each with a unit; or a bare 0.
DURATION = re.compile(r"^[-+]?(0|((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$")
# resource.Quantity: a signed decimal number, then a binary or decimal suffix or an exponent.
QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")


@cache
def schema(minor: str, component: str) -> dict[str, Any]:
    path = resources.files(__package__).joinpath("schemas", minor, SCHEMAS[component])
    return json.loads(path.read_text())


def check(minor: str, component: str, value: Any, path: str) -> list[Problem]:
    """Every problem of one component's settings, each naming its field. apiVersion and kind are kbootstrap's:
    they say which API the release's configuration is written in."""
    owned = [Problem(f"{path}.{k}", f"set by kbootstrap for Kubernetes {minor} ({KINDS[component]}); leave it out")
             for k in ("apiVersion", "kind") if isinstance(value, dict) and k in value]
    return owned + _check(schema(minor, component), value, path, KINDS[component])


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(v), type(v).__name__)


def _check(s: dict[str, Any], v: Any, path: str, owner: str) -> list[Problem]:
    kind = s["type"]
    if kind == "any" or (v is None and kind != "duration"):
        return []  # null is JSON's "not set" for a Go field, except a metav1.Duration's (it reads it as "")
    if kind == "object":
        if not isinstance(v, dict):
            return [Problem(path, f"expected a mapping, got {_type_name(v)}")]
        out = []
        for key, item in v.items():
            if key in ("apiVersion", "kind") and path.count(".") == 1:
                continue  # reported by check()
            if not isinstance(key, str) or key not in s["fields"]:
                near = [f for f in s["fields"] if isinstance(key, str) and f.lower() == key.lower()]
                hint = f"; did you mean {near[0]!r}?" if near else ""
                out.append(Problem(f"{path}.{key}", f"unknown field: not a field of {owner}{hint}"))
                continue
            out += _check(s["fields"][key], item, f"{path}.{key}", owner)
        return out
    if kind == "map":
        if not isinstance(v, dict):
            return [Problem(path, f"expected a mapping, got {_type_name(v)}")]
        return [p for key, item in v.items() for p in
                ([Problem(f"{path}.{key}", "expected a string key")] if not isinstance(key, str) else
                 _check(s["values"], item, f"{path}.{key}", owner))]
    if kind == "array":
        if not isinstance(v, list):
            return [Problem(path, f"expected a list, got {_type_name(v)}")]
        return [p for i, item in enumerate(v) for p in _check(s["items"], item, f"{path}[{i}]", owner)]
    return [Problem(path, why)] if (why := _scalar(s, v)) else []


def _scalar(s: dict[str, Any], v: Any) -> str | None:
    kind = s["type"]
    if kind in ("string", "bytes", "time"):
        return None if isinstance(v, str) else f"expected a string, got {_type_name(v)}"
    if kind == "boolean":
        return None if isinstance(v, bool) else f"expected true or false, got {_type_name(v)}"
    if kind == "integer":
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            v = int(v)  # 10.0 decodes into an int, as Go's json does
        if not isinstance(v, int) or isinstance(v, bool):
            return f"expected an integer, got {_type_name(v)}"
        lo, hi = (0, 2 ** s["bits"] - 1) if s["unsigned"] else (-(2 ** (s["bits"] - 1)), 2 ** (s["bits"] - 1) - 1)
        return None if lo <= v <= hi else f"{v} is out of range for a {s['bits']}-bit integer ({lo}..{hi})"
    if kind == "number":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"expected a number, got {_type_name(v)}"
        return None if math.isfinite(v) else f"{v} is not a finite number"
    if kind == "duration":
        return None if isinstance(v, str) and DURATION.match(v) else \
            f"expected a duration such as '30s' or '1h30m', got {v!r}"
    if kind == "durationorinteger":  # logging.flushFrequency: a duration string, or nanoseconds
        if isinstance(v, int) and not isinstance(v, bool):
            return None if -(2 ** 63) <= v < 2 ** 63 else f"{v} is out of range for nanoseconds (a 64-bit integer)"
        return None if isinstance(v, str) and DURATION.match(v) else \
            f"expected a duration such as '5s', or an integer of nanoseconds, got {v!r}"
    if kind == "quantity":
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return None
        return None if isinstance(v, str) and QUANTITY.match(v) else f"expected a quantity such as '100Mi', got {v!r}"
    if kind == "intorstring":
        return None if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)) else \
            f"expected an integer or a string, got {_type_name(v)}"
    return None
