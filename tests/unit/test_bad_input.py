"""Inputs that were accepted and should not be (issue: bad input found as a new user would): each is refused with
exit 2 and one line naming the field, before any host is touched, never a traceback."""

from __future__ import annotations

import pytest
import yaml

from kbootstrap.errors import SpecError
from kbootstrap.model.spec import MAX_INVENTORY_BYTES, build_spec, parse_inventory
from tests.conftest import INVENTORIES, kb

STACKED = (INVENTORIES / "lab-stacked.yaml").read_text()


def _problems(data) -> list[str]:
    with pytest.raises(SpecError) as e:
        build_spec(data)
    return [f"{p.path}: {p.message}" for p in e.value.problems]


@pytest.mark.parametrize("value,why", [
    (10, "not a int"), ("0.0.0.0", "unspecified"), ("127.0.0.1", "loopback"), ("224.0.0.5", "multicast"),
    ("255.255.255.255", "broadcast"), ("169.254.1.1", "link-local"), ("240.0.0.1", "reserved"),
])
def test_a_node_address_other_hosts_cannot_reach_is_refused(stacked_data, value, why):
    stacked_data["nodes"][0]["address"] = value
    [line] = [p for p in _problems(stacked_data) if p.startswith("nodes[0]")]
    assert line.startswith("nodes[0] (lb1).address:") or line.startswith("nodes[0].address:"), line
    assert why in line or "dotted text" in line, line


@pytest.mark.parametrize("value", [10, "0.0.0.0", "127.0.0.1", "224.0.0.5", "255.255.255.255"])
def test_such_a_vip_is_refused(stacked_data, value):
    stacked_data["load_balancer"]["vip"] = value
    problems = _problems(stacked_data)
    assert len(problems) == 1 and problems[0].startswith("load_balancer.vip:"), problems


def test_an_integer_address_is_never_read_as_0_0_0_10(stacked_data):
    stacked_data["nodes"][0]["address"] = 10
    assert any("write the address as dotted text" in p for p in _problems(stacked_data))


def test_a_duplicate_key_is_an_error_naming_both_lines():
    text = STACKED.replace("  name: lab-stacked\n", "  name: lab-stacked\n  name: other\n", 1)
    with pytest.raises(SpecError) as e:
        parse_inventory(text)
    [p] = e.value.problems
    assert p.path.startswith("line ") and "duplicate key 'name'" in p.message and "first at line" in p.message


def test_an_oversized_inventory_is_refused_before_it_is_parsed(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(STACKED + "#" * (MAX_INVENTORY_BYTES + 1))
    p = kb("validate", "-i", str(big), home=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "an inventory is at most 1 MiB" in p.stderr


def test_each_is_one_line_and_exit_2_on_the_command_line(tmp_path, stacked_data):
    stacked_data["nodes"][2]["address"] = "127.0.0.1"
    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml.safe_dump(stacked_data))
    p = kb("validate", "-i", str(inv), home=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    [line] = [x for x in p.stderr.splitlines() if "127.0.0.1" in x]
    assert "nodes[2]" in line and "loopback" in line
