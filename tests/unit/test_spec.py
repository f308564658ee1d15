"""The inventory loader: every rule, each problem named by its field path, all problems at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbootstrap.errors import SpecError
from kbootstrap.model.spec import Role, Topology, build_spec, json_schema, load_inventory, parse_inventory

INVENTORIES = Path(__file__).resolve().parents[2] / "inventories"


def problems(data) -> list[str]:
    with pytest.raises(SpecError) as e:
        build_spec(data)
    return [str(p) for p in e.value.problems]


@pytest.mark.parametrize("name", ["lab-stacked", "lab-external", "lab-mini", "lab-local", "example"])
def test_shipped_inventories_load(name):
    spec = load_inventory(INVENTORIES / f"{name}.yaml")
    assert spec.control_planes
    assert len(spec.etcd_members) % 2 == 1


def test_stacked_puts_etcd_on_control_planes(stacked_data):
    for n in stacked_data["nodes"]:  # the etcd role is implied in a stacked topology
        n["roles"] = [r for r in n["roles"] if r != "etcd"]
    spec = build_spec(stacked_data)
    assert [n.name for n in spec.etcd_members] == ["cp1", "cp2", "cp3"]
    assert spec.api_server_url == "https://10.77.0.10:6443"


def test_relative_key_path_resolves_from_inventory_file(tmp_path):
    inv = tmp_path / "inv.yaml"
    inv.write_text((INVENTORIES / "lab-mini.yaml").read_text().replace("~/.cache/kbootstrap/lab/id_ed25519", "keys/id"))
    assert load_inventory(inv).ssh.key == tmp_path / "keys/id"


def test_duplicate_names_and_addresses(stacked_data):
    stacked_data["nodes"][1]["name"] = "lb1"
    stacked_data["nodes"][3]["address"] = "10.77.0.21"
    found = problems(stacked_data)
    assert any(p.startswith("nodes[1] (lb1).name: duplicate node name") for p in found)
    assert any(p.startswith("nodes[3] (cp2).address: duplicate address 10.77.0.21") for p in found)


def test_every_problem_listed_at_once(stacked_data):
    stacked_data["nodes"][0]["address"] = "10.77.0.999"
    stacked_data["nodes"][2]["roles"] = ["control-plane", "dancer"]
    stacked_data["cluster"]["kubernetes_version"] = "1.12.0"
    stacked_data["network"]["pod_cidr"] = "not-a-cidr"
    found = problems(stacked_data)
    paths = {p.split(":")[0] for p in found}
    assert {"nodes[0] (lb1).address", "nodes[2] (cp1).roles[1]", "cluster.kubernetes_version",
            "network.pod_cidr"} <= paths, found
    assert any("unsupported version '1.12.0'; supported: 1.33.6, 1.34.2" in p for p in found)


def test_unknown_field_is_named(stacked_data):
    stacked_data["cluster"]["topolgy"] = "stacked"
    assert problems(stacked_data) == [
        "cluster.topolgy: unknown field (check the spelling; `kbootstrap schema` lists every field)"
    ]


def test_stacked_etcd_only_node_refused(stacked_data):
    stacked_data["nodes"].append({"name": "e1", "address": "10.77.0.41", "roles": ["etcd"]})
    assert any(p.startswith("nodes[7] (e1).roles: 'etcd' without 'control-plane' in a stacked topology")
               for p in problems(stacked_data))


def test_external_etcd_on_control_plane_refused(external_data):
    external_data["nodes"][5]["roles"] = ["control-plane", "etcd"]
    found = problems(external_data)
    assert any(p.startswith("nodes[5] (xcp1).roles: 'etcd' together with 'control-plane'") for p in found)
    # ... and the etcd count became even (4): a warning (etcd runs with it; a replacement passes through it).
    assert not any("4 etcd members" in p for p in found)


def test_external_without_etcd_nodes(external_data):
    external_data["nodes"] = [n for n in external_data["nodes"] if "etcd" not in n["roles"]]
    assert "nodes: external topology needs nodes with the 'etcd' role; none has it" in problems(external_data)


def test_even_etcd_and_fewer_than_three_are_warnings(stacked_data):
    stacked_data["nodes"] = [n for n in stacked_data["nodes"] if n["name"] != "cp3"]
    assert build_spec(stacked_data).warnings == (
        "2 etcd members: an even count adds no fault tolerance over one fewer and needs more members for a quorum; "
        "use an odd number (1, 3 or 5)",
        "2 etcd member(s): the cluster cannot survive the loss of an etcd member (use 3)")
    stacked_data["nodes"] = [n for n in stacked_data["nodes"] if n["name"] != "cp2"]
    spec = build_spec(stacked_data)
    assert spec.warnings == ("1 etcd member(s): the cluster cannot survive the loss of an etcd member (use 3)",)


def test_no_control_plane(stacked_data):
    stacked_data["nodes"] = [n for n in stacked_data["nodes"] if "control-plane" not in n["roles"]]
    assert "nodes: no node has the 'control-plane' role; at least one is required" in problems(stacked_data)


def test_cidr_overlap_and_node_addresses_inside(stacked_data):
    stacked_data["network"] = {"service_cidr": "10.96.0.0/12", "pod_cidr": "10.100.0.0/16"}
    assert any(p.startswith("network.pod_cidr: 10.100.0.0/16 overlaps network.service_cidr") for p in problems(stacked_data))
    stacked_data["network"] = {"service_cidr": "10.77.0.0/16", "pod_cidr": "10.244.0.0/16"}
    found = problems(stacked_data)
    assert "network.service_cidr: 10.77.0.0/16 contains the address of nodes[0] (lb1) (10.77.0.11)" in found
    assert "network.service_cidr: 10.77.0.0/16 contains load_balancer.vip 10.77.0.10" in found


def test_pod_cidr_too_small_for_nodes(stacked_data):
    stacked_data["network"]["pod_cidr"] = "10.244.0.0/22"
    stacked_data["network"]["node_pod_prefix"] = 24
    assert any(p.startswith("network.node_pod_prefix: 10.244.0.0/22 holds only 4 subnets of /24, but 5 nodes")
               for p in problems(stacked_data))


def test_vip_without_loadbalancer_nodes(stacked_data):
    stacked_data["nodes"] = [n for n in stacked_data["nodes"] if "loadbalancer" not in n["roles"]]
    found = problems(stacked_data)
    assert "load_balancer.vip: 10.77.0.10 is set but no node has the 'loadbalancer' role to provide it" in found


def test_two_loadbalancers_need_a_vip(stacked_data):
    del stacked_data["load_balancer"]["vip"]
    assert problems(stacked_data) == [
        "load_balancer.vip: 2 loadbalancer nodes need a virtual IP for keepalived to share; none set"
    ]


def test_several_control_planes_need_a_load_balancer(stacked_data):
    stacked_data["nodes"] = [n for n in stacked_data["nodes"] if "loadbalancer" not in n["roles"]]
    del stacked_data["load_balancer"]["vip"]
    found = problems(stacked_data)
    assert any(p.startswith("load_balancer: 3 control planes but no load balancer") for p in found)
    stacked_data["load_balancer"]["external_address"] = "api.example.com"
    assert build_spec(stacked_data).api_server_url == "https://api.example.com:6443"


def test_loadbalancer_and_control_plane_on_one_port(stacked_data):
    stacked_data["nodes"][2]["roles"] = ["control-plane", "etcd", "loadbalancer"]
    assert any("cannot be both 'loadbalancer' and 'control-plane'" in p for p in problems(stacked_data))


def test_lab_addresses_must_be_on_the_lab_bridge(stacked_data):
    stacked_data["nodes"][6]["address"] = "192.168.5.5"
    assert "nodes[6] (w2).address: outside the lab network 10.77.0.0/24 (lab.gateway)" in problems(stacked_data)


def test_pod_subnets_are_stable_when_nodes_are_appended(stacked_data):
    before = build_spec(stacked_data).pod_subnets
    stacked_data["nodes"].append({"name": "w3", "address": "10.77.0.33", "roles": ["worker"]})
    after = build_spec(stacked_data).pod_subnets
    assert {k: after[k] for k in before} == before
    assert str(after["w3"]) == "10.244.5.0/24"


@pytest.mark.parametrize("text,where", [
    ("", "expected a mapping with 'cluster' and 'nodes' at the top, got empty"),
    ("- a\n- b\n", "got a list"),
    ("cluster: {name: x\n", "line 2, column 1: not valid YAML"),
    ("cluster: {name: Bad_Name}\nnodes: []\n", "cluster.name: String should match pattern"),
])
def test_malformed_files(text, where):
    with pytest.raises(SpecError) as e:
        parse_inventory(text)
    assert where in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="file not found"):
        load_inventory(tmp_path / "nope.yaml")


def test_roles_and_topology_typed(stacked_data):
    spec = build_spec(stacked_data)
    assert spec.cluster.topology is Topology.STACKED
    assert [n.name for n in spec.with_role(Role.LOADBALANCER)] == ["lb1", "lb2"]
    assert [n.name for n in spec.kubelet_nodes] == ["cp1", "cp2", "cp3", "w1", "w2"]


def test_schema_is_json_schema_with_every_section():
    schema = json.loads(json_schema())
    assert schema["$schema"].endswith("2020-12/schema")
    assert {"cluster", "nodes", "ssh", "load_balancer", "network", "certificates"} <= set(schema["properties"])


def test_shipped_schema_is_current():
    """inventories/inventory.schema.json (for editors) is what `kbootstrap schema` prints today."""
    assert json.loads((INVENTORIES / "inventory.schema.json").read_text()) == json.loads(json_schema()), \
        "regenerate: python3 -m kbootstrap schema > inventories/inventory.schema.json"
