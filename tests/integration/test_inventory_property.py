"""The whole inventory, generated: every field the model has (from its JSON schema, so optional fields absent from
the lab inventories are edited too), set to values of every type or deleted. Property: the inventory is refused
with problems that each name a field (exit 2 on the command line), or it renders every file of every host —
never a traceback. component_config's values are further checked against the upstream types by strictcheck in
test_component_schemas.py."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kbootstrap.errors import PKIError, SpecError
from kbootstrap.model.spec import Inventory, build_spec
from kbootstrap.pki.issue import ensure_pki
from kbootstrap.pki.secrets import ensure_secrets
from kbootstrap.render import RenderContext, render_host
from tests.conftest import REPO

BASE = yaml.safe_load((REPO / "inventories" / "lab-stacked.yaml").read_text())
BASE.setdefault("certificates", {})["key_algorithm"] = "ecdsa-p256"  # keys in milliseconds: thousands of examples


def _schema_paths() -> list[tuple]:
    """Every field path of the Inventory model: objects' properties, list items (nodes 0-2), map entries."""
    schema = Inventory.model_json_schema()
    defs = schema.get("$defs", {})

    def resolve(s: dict) -> dict:
        while "$ref" in s:
            s = defs[s["$ref"].rsplit("/", 1)[-1]]
        for key in ("anyOf", "allOf"):
            for alt in s.get(key, []):
                r = resolve(alt)
                if r.get("type") in ("object", "array") or "properties" in r:
                    return r
        return s

    out: list[tuple] = []

    def walk(s: dict, prefix: tuple, depth: int) -> None:
        s = resolve(s)
        if depth > 6:
            return
        for name, sub in s.get("properties", {}).items():
            out.append(prefix + (name,))
            walk(sub, prefix + (name,), depth + 1)
        if s.get("type") == "array" and "items" in s:
            for i in range(3):
                out.append(prefix + (i,))
                walk(s["items"], prefix + (i,), depth + 1)
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            for key in ("kubelet", "kube-apiserver", "maxPods", "role"):
                out.append(prefix + (key,))
                walk(extra, prefix + (key,), depth + 1)

    walk(schema, (), 0)
    return out


PATHS = _schema_paths()
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 70000), st.floats(allow_nan=True), st.text(max_size=20),
    st.sampled_from(["", "10.77.0.99", "10.0.0.0/8", "0.0.0.0", "1.34.2", "stacked", "external", "systemd",
                     "static-pod", "worker", "etcd", "ecdsa-p256", "[/]", "a" * 70, "30s", "100Mi", "eth0"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)), max_leaves=8)


def _set(doc: dict, path: tuple, value, delete: bool) -> None:
    parent = doc
    for part in path[:-1]:
        if isinstance(parent, dict):
            parent = parent.setdefault(part, {})
        elif isinstance(parent, list) and isinstance(part, int) and part < len(parent):
            parent = parent[part]
        else:
            return  # the path is not there in this document: leave it
        if not isinstance(parent, (dict, list)):
            return
    last = path[-1]
    if isinstance(parent, dict):
        if delete:
            parent.pop(last, None)
        else:
            parent[last] = value
    elif isinstance(parent, list) and isinstance(last, int) and last < len(parent):
        if delete:
            del parent[last]
        else:
            parent[last] = value


PKI_ROOT = Path(tempfile.mkdtemp(prefix="kb-property-pki-"))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), values, st.booleans()), min_size=1, max_size=3))
def test_any_inventory_is_refused_by_field_or_renders(edits):
    doc = copy.deepcopy(BASE)
    for path, value, delete in edits:
        _set(doc, path, value, delete)
    try:
        spec = build_spec(doc)
    except SpecError as e:
        event("refused")
        assert e.problems
        for p in e.problems:
            assert p.message and (p.path or "mapping" in p.message or "YAML" in p.message), p
        return
    event("rendered")
    try:
        pki = ensure_pki(spec, PKI_ROOT / spec.cluster.name)
    except PKIError:  # this test's shared cluster directory from an earlier example: start it afresh
        pki = ensure_pki(spec, Path(tempfile.mkdtemp(prefix="kb-property-pki-")))
    ctx = RenderContext(spec, pki, ensure_secrets(PKI_ROOT / spec.cluster.name))
    for node in spec.nodes:
        assert render_host(ctx, node), node.name
