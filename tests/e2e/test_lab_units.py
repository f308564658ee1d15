"""The lab's pure parts, no host needed: inventories as layouts, known_hosts updates, and the
Vagrantfile agreeing with the Python lab on names, addresses, MACs and sizes."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import subprocess

import pytest

from kbootstrap.errors import KbootstrapError
from kbootstrap.lab import known_hosts, load_layout
from kbootstrap.lab.layout import REPO
from kbootstrap.lab.lxc import mac_for

INVENTORIES = sorted((REPO / "inventories").glob("lab-*.yaml"))


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.stem)
def test_every_lab_inventory_is_a_usable_layout(path):
    layout = load_layout(path)
    assert layout.nodes and layout.bridge and layout.ssh_user == "vagrant"
    assert all(n.address in layout.gateway.network for n in layout.nodes)
    assert layout.known_hosts.parent == layout.ssh_key.parent  # one lab cache directory


def test_layouts_can_be_up_together():
    """Distinct container names and addresses across the lab inventories (they share one bridge)."""
    layouts = [load_layout(p) for p in INVENTORIES]
    names = [lay.container(n) for lay in layouts for n in lay.nodes]
    addresses = [n.address for lay in layouts for n in lay.nodes]
    assert len(set(names)) == len(names)
    assert len(set(addresses)) == len(addresses)
    assert len({(lay.bridge, lay.gateway) for lay in layouts}) == 1


def test_layout_rejects_addresses_off_the_lab_network(tmp_path):
    data = (REPO / "inventories" / "lab-mini.yaml").read_text().replace("10.77.0.221", "10.78.0.221")
    bad = tmp_path / "bad.yaml"
    bad.write_text(data)
    with pytest.raises(KbootstrapError, match="mw1"):  # spec.py or the lab's own check
        load_layout(bad)


def test_mac_is_stable_and_locally_administered():
    layout = load_layout(REPO / "inventories" / "lab-mini.yaml")
    node = dataclasses.replace(layout.nodes[0], address=ipaddress.IPv4Address("10.77.0.221"))
    assert mac_for(node) == "02:6b:0a:4d:00:dd"


def test_known_hosts_update_replaces_only_the_given_hosts(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("10.0.0.9 ssh-ed25519 OTHER\n10.77.0.11 ssh-ed25519 OLD\n# comment\n")
    known_hosts.update(kh, {"10.77.0.11": ["ssh-ed25519 NEW", "ecdsa-sha2-nistp256 NEW2"]})
    assert kh.read_text().splitlines() == [
        "10.0.0.9 ssh-ed25519 OTHER", "# comment", "10.77.0.11 ssh-ed25519 NEW", "10.77.0.11 ecdsa-sha2-nistp256 NEW2",
    ]
    assert known_hosts.entries(kh, "10.77.0.11") == ["ssh-ed25519 NEW", "ecdsa-sha2-nistp256 NEW2"]
    known_hosts.forget(kh, ["10.77.0.11"])
    assert kh.read_text().splitlines() == ["10.0.0.9 ssh-ed25519 OTHER", "# comment"]


@pytest.mark.skipif(shutil.which("ruby") is None, reason="needs ruby (comes with vagrant)")
def test_the_vagrantfile_records_host_keys_as_the_python_lab_does(tmp_path):
    """vagrant/known_hosts.rb (the Vagrantfile's after-up trigger) and known_hosts.py write one format under one
    lock: each reads what the other wrote, and an update replaces only its own address's lines."""
    kh = tmp_path / "lab" / "known_hosts"
    known_hosts.update(kh, {"10.77.0.11": ["ssh-ed25519 PY11"], "10.77.0.12": ["ssh-ed25519 PY12"]})
    ruby = (f'require "{REPO / "vagrant" / "known_hosts.rb"}"; '
            'keys = LabKnownHosts.parse("ssh-ed25519 AAAA root@cp1\\necdsa-sha2-nistp256 BBBB root@cp1\\nnoise\\n"); '
            'LabKnownHosts.update(ARGV[0], "10.77.0.11", keys); LabKnownHosts.forget(ARGV[0], "10.77.0.99")')
    subprocess.run(["ruby", "-e", ruby, str(kh)], check=True, timeout=60)
    assert known_hosts.entries(kh, "10.77.0.11") == ["ssh-ed25519 AAAA", "ecdsa-sha2-nistp256 BBBB"]
    assert known_hosts.entries(kh, "10.77.0.12") == ["ssh-ed25519 PY12"]
    subprocess.run(["ruby", "-e", f'require "{REPO / "vagrant" / "known_hosts.rb"}"; '
                    'LabKnownHosts.forget(ARGV[0], "10.77.0.12")', str(kh)], check=True, timeout=60)
    assert kh.read_text() == "10.77.0.11 ssh-ed25519 AAAA\n10.77.0.11 ecdsa-sha2-nistp256 BBBB\n"
    assert oct(kh.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in kh.parent.iterdir()) == ["known_hosts", "known_hosts.lock"]  # no temp file left


RUBY_DUMP = r"""
# Evaluate the Vagrantfile with a recording stand-in for Vagrant and print what it configured.
require "json"
module Vagrant; end
class Rec
  attr_reader :calls
  def initialize; @calls = Hash.new { |h, k| h[k] = [] }; end
  def method_missing(name, *args, &_blk)  # records; never runs blocks (e.g. trigger bodies)
    @calls[name] << [args, nil]
    self
  end
  def respond_to_missing?(*) = true
end
$machines = {}
def Vagrant.configure(_v)
  config = Object.new
  def config.vm = (@vm ||= VM.new)
  def config.ssh = Rec.new
  def config.trigger = Rec.new
  yield config
end
class VM
  def synced_folder(*) = nil
  def define(name)
    m = Object.new; vm = MVM.new; m.define_singleton_method(:vm) { vm }
    yield m
    $machines[name] = vm.dump
  end
end
class MVM
  def initialize; @lxc = Rec.new; @override = Rec.new; end
  def hostname=(h); @hostname = h; end
  def provider(name)
    override = Struct.new(:vm, :ssh).new(Rec.new, Rec.new)
    yield(name == :lxc ? @lxc : Rec.new, override)
  end
  def dump
    {hostname: @hostname, container: @lxc.calls[:container_name=].map(&:first).flatten.first,
     customize: @lxc.calls[:customize].map(&:first)}
  end
end
load ARGV[0]
puts JSON.dump($machines)
"""


@pytest.mark.skipif(shutil.which("ruby") is None, reason="needs ruby (comes with vagrant)")
@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.stem)
def test_vagrantfile_reads_the_inventory_like_the_python_lab(path, tmp_path):
    """One node list: the Vagrantfile's machines are the inventory's nodes, with the same container
    names, hostnames, addresses, gateway, MACs and sizes as the Python lab's `lxc` engine."""
    script = tmp_path / "dump.rb"
    script.write_text(RUBY_DUMP)
    env = {**os.environ, "KB_INVENTORY": str(path), "HOME": os.environ.get("HOME", str(tmp_path))}
    out = subprocess.run(["ruby", str(script), str(REPO / "vagrant" / "Vagrantfile")],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    machines = json.loads(out.stdout)
    layout = load_layout(path)
    assert list(machines) == [n.name for n in layout.nodes]
    for node in layout.nodes:
        m = machines[node.name]
        custom = {}
        for key, value in m["customize"]:
            custom[key] = value  # last one wins, as in LXC
        assert m["hostname"] == node.name
        assert m["container"] == layout.container(node)
        assert custom["net.0.link"] == layout.bridge
        assert custom["net.0.ipv4.address"] == f"{node.address}/{layout.gateway.network.prefixlen}"
        assert ["net.0.ipv4.address", ""] in m["customize"]  # cleared first: halt/up works
        assert custom["net.0.ipv4.gateway"] == str(layout.gateway.ip)
        assert custom["net.0.hwaddr"] == mac_for(node)
        assert custom["cgroup.memory.limit_in_bytes"] == f"{node.memory_mb}M"
        assert custom["cgroup.cpu.cfs_quota_us"] == str(node.cpus * 100000)
