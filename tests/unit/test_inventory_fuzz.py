"""Property tests: random and hostile inventories never give a traceback, always a SpecError with a path."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kbootstrap.errors import SpecError
from kbootstrap.model.spec import build_spec, parse_inventory

VALID = yaml.safe_load((Path(__file__).resolve().parents[2] / "inventories/lab-stacked.yaml").read_text())

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
    st.sampled_from(["", "-1", "10.0.0.0/8", "::1", "stacked", "1.34.2", "☃", "a" * 300, "${HOME}", "\x00"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def _paths(doc, prefix=()):
    """Every (path) into a nested dict/list document."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = [p for p in _paths(VALID) if p]


def _outcome(fn, arg):
    try:
        fn(arg)
    except SpecError as e:
        assert e.problems, "a SpecError must carry at least one problem"
        for p in e.problems:
            assert p.message, p
        return "error"
    return "ok"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_random_text_never_tracebacks(text):
    _outcome(parse_inventory, text)


@settings(max_examples=300, deadline=None)
@given(values)
def test_random_documents_never_traceback(doc):
    _outcome(build_spec, doc)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(ALL_PATHS), values, st.booleans())
def test_hostile_edits_of_a_valid_inventory(path, value, delete):
    """Replace or delete one field anywhere in a valid inventory: the loader answers with a clear error or a spec."""
    doc = copy.deepcopy(VALID)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    _outcome(build_spec, doc)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(ALL_PATHS), st.text(alphabet="\"'\\\n\r\t%$`{}[]#:;&|<>", min_size=1, max_size=20))
def test_shell_and_format_metacharacters_never_reach_a_spec(path, nasty):
    """Metacharacters in any string field are refused by the field's pattern or type, or kept verbatim."""
    doc = copy.deepcopy(VALID)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = nasty
    if _outcome(build_spec, doc) == "ok":
        # The only free-text fields that may hold such a value are ones rendered through escaping filters,
        # or controller-side paths never rendered into a host's file (`artifacts`).
        assert path[0] in {"ssh", "container_runtime", "extra_args", "component_config", "nodes", "artifacts"}, path


def test_deeply_nested_yaml_is_an_error_not_a_crash():
    text = "cluster: " + "[" * 5000 + "]" * 5000
    assert _outcome(parse_inventory, text) == "error"


def test_values_that_would_break_a_rendered_file_are_refused(stacked_data):
    stacked_data["extra_args"] = {"kube-apiserver": {"v": "2\nExecStartPre=/bin/sh -c evil"}}
    stacked_data["nodes"][5]["labels"] = {"tier": "a,b=c"}
    try:
        build_spec(stacked_data)
    except SpecError as e:
        paths = {p.path for p in e.problems}
    assert "extra_args.kube-apiserver.v" in paths
    assert "nodes[5] (w1).labels.tier" in paths
