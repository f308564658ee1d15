"""component_config against the upstream types: the committed schemas are what the Go types say
(tests/tools/strictcheck/gen-schemas.sh), and over generated settings kbootstrap's check either refuses, naming
the field, or the rendered KubeletConfiguration and KubeProxyConfiguration are accepted by strictcheck (the
upstream types, decoded strictly): nothing the check lets through fails on the host."""

from __future__ import annotations

import copy
import filecmp
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kbootstrap.errors import SpecError
from kbootstrap.model import component_config
from kbootstrap.model.spec import build_spec
from kbootstrap.pki.issue import ensure_pki
from kbootstrap.pki.secrets import ensure_secrets
from kbootstrap.render import RenderContext
from kbootstrap.render.node import kube_proxy_files, kubelet_files
from tests.conftest import REPO

pytestmark = pytest.mark.tools

GEN = REPO / "tests" / "tools" / "strictcheck" / "gen-schemas.sh"
BUILD = REPO / "tests" / "tools" / "strictcheck" / "build.sh"
BASE = yaml.safe_load((REPO / "inventories" / "lab-mini.yaml").read_text())


def test_committed_schemas_are_what_the_go_types_say(tmp_path):
    res = subprocess.run(["bash", str(GEN), str(tmp_path)], capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    committed = REPO / "kbootstrap" / "model" / "schemas"
    cmp = filecmp.dircmp(committed, tmp_path)
    assert sorted(cmp.common_dirs) == ["1.33", "1.34"]
    for minor in cmp.common_dirs:
        sub = filecmp.dircmp(committed / minor, tmp_path / minor)
        assert not sub.diff_files and not sub.left_only and not sub.right_only, (minor, sub.diff_files)


def _values(s: dict, depth: int = 0) -> st.SearchStrategy:
    """Values for a schema node: mostly of its type, sometimes of another (the check must catch those)."""
    wrong = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=5))
    kind = s["type"]
    if kind == "object" and depth < 3:
        fields = sorted(s["fields"])
        right = st.lists(st.sampled_from(fields), max_size=3, unique=True).flatmap(
            lambda keys: st.fixed_dictionaries({k: _values(s["fields"][k], depth + 1) for k in keys}))
        typo = st.sampled_from(fields).map(lambda f: {f.upper(): 1})
        return st.one_of(right, right, right, typo, wrong)
    if kind == "map":
        return st.one_of(st.dictionaries(st.sampled_from(["memory.available", "cpu", "a"]),
                                         _values(s["values"], depth + 1), max_size=2), wrong)
    if kind == "array":
        return st.one_of(st.lists(_values(s["items"], depth + 1), max_size=2), wrong)
    if kind == "integer":
        return st.one_of(st.integers(-(2 ** 34), 2 ** 34), st.integers(0, 100), wrong)
    if kind == "duration":
        return st.one_of(st.sampled_from(["0", "30s", "1h30m", "1.5h", "-2m", "10", "1 minute", "ms", ""]), wrong)
    if kind == "durationorinteger":
        return st.one_of(st.sampled_from(["5s", "1h30m", "", "10", "1 minute"]), st.integers(-(2 ** 64), 2 ** 64),
                         wrong)
    if kind == "quantity":
        return st.one_of(st.sampled_from(["100Mi", "1Gi", "250m", "1e3", "1.5", "1Zi", "Mi", ""]),
                         st.integers(0, 10), wrong)
    if kind == "boolean":
        return st.one_of(st.booleans(), wrong)
    if kind == "number":
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3), wrong)
    return st.one_of(st.text(alphabet="abc-./: ", max_size=6), wrong)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    spec = build_spec(copy.deepcopy(BASE))
    return ensure_pki(spec, root), ensure_secrets(root)


def _strictcheck() -> str:
    res = subprocess.run(["bash", str(BUILD), "1.34.2"], capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def strictcheck():
    return _strictcheck()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(kubelet=_values(component_config.schema("1.34", "kubelet")),
       proxy=_values(component_config.schema("1.34", "kube-proxy")))
def test_settings_are_refused_by_field_or_accepted_upstream(kubelet, proxy, pki, strictcheck, tmp_path):
    doc = copy.deepcopy(BASE)
    doc["component_config"] = {"kubelet": kubelet, "kube-proxy": proxy}
    try:
        spec = build_spec(doc)
    except SpecError as e:
        assert e.problems and all(p.path.startswith(("component_config", "nodes", "network")) for p in e.problems), \
            e.problems
        return
    ctx = RenderContext(spec, *pki)
    node = spec.node("mw1")
    files = []
    for i, a in enumerate(kubelet_files(ctx, node) + kube_proxy_files(ctx, node)):
        text = a.content.decode()
        if "KubeletConfiguration" in text or "KubeProxyConfiguration" in text:
            f = Path(tmp_path) / f"{i}.yaml"
            f.write_text(text)
            files.append(f)
    assert len(files) == 2
    res = subprocess.run([strictcheck, *map(str, files)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"accepted by kbootstrap, refused upstream:\n{res.stderr}\n{kubelet}\n{proxy}"
