"""User text is never read as rich markup: brackets in an inventory value, key or path are printed as they are,
and an error shows the whole message (a "should match pattern" message used to lose its pattern's brackets, and
`[/]` in a value ended validate and render with a rich MarkupError traceback)."""

from __future__ import annotations

import yaml

from tests.conftest import INVENTORIES, kb


def _inventory(tmp_path, change) -> str:
    doc = yaml.safe_load((INVENTORIES / "lab-mini.yaml").read_text())
    change(doc)
    path = tmp_path / "[/x]" / "inv.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_brackets_in_a_value_are_printed_not_interpreted(tmp_path):
    inv = _inventory(tmp_path, lambda d: d["ssh"].update(key="/keys/[/]lab[/x]"))
    p = kb("validate", "-i", inv, home=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and f"ok {inv}:" in p.stdout
    out = tmp_path / "[/]out"
    p = kb("render", "-i", inv, "-o", str(out), home=tmp_path)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert (out / "mcp1" / "etc/kubernetes/manifests/kube-apiserver.yaml").is_file()


def test_an_error_about_a_bracketed_value_shows_it_and_the_whole_pattern(tmp_path):
    inv = _inventory(tmp_path, lambda d: d["cluster"].update(name="lab[/]"))
    p = kb("validate", "-i", inv, home=tmp_path)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    line = next(x for x in p.stderr.splitlines() if "cluster.name" in x)
    assert "(got 'lab[/]')" in line and "'^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'" in line


def test_a_bracketed_key_is_named_in_the_error(tmp_path):
    inv = _inventory(tmp_path, lambda d: d.update({"[bold]x[/bold]": 1}))
    p = kb("validate", "-i", inv, home=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "[bold]x[/bold]" in p.stderr
