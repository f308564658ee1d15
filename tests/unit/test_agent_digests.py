"""The agent's digest cache (kbootstrap/hostside/agent.py): a large file's digest is reused only while the file
is the same file, unchanged; any write, even one that keeps its size and modification time, hashes it again."""

from __future__ import annotations

import hashlib
import os
import time

from kbootstrap.hostside import agent


def _fact(path, cache, settled=0.0):
    digests = agent._Digests(str(cache), settled)
    fact = agent._file_fact(str(path), digests)
    digests.save()
    return fact["sha256"]


def test_a_large_file_is_hashed_once_then_read_from_the_cache(tmp_path):
    big, cache = tmp_path / "kubelet", tmp_path / "state" / "digests.json"
    big.write_bytes(b"a" * agent.CACHED_FROM)
    assert _fact(big, cache) == hashlib.sha256(big.read_bytes()).hexdigest()
    assert cache.is_file()
    # The cache is what answers now: plant a marker digest in it for the same file state.
    known = agent._Digests(str(cache)).known
    known[str(big)][5] = "cached"
    cache.write_text(__import__("json").dumps(known))
    assert _fact(big, cache) == "cached"


def test_a_rewrite_with_the_same_size_and_mtime_is_hashed_again(tmp_path):
    big, cache = tmp_path / "kubelet", tmp_path / "digests.json"
    big.write_bytes(b"a" * agent.CACHED_FROM)
    _fact(big, cache)
    st = big.stat()
    time.sleep(0.05)  # past the file system's clock tick (settled=0 here; the agent waits 2 s)
    with open(big, "r+b") as f:  # same inode, same size, mtime put back: only the change time tells
        f.write(b"b")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _fact(big, cache) == hashlib.sha256(big.read_bytes()).hexdigest()


def test_small_files_are_not_cached_and_a_broken_cache_is_ignored(tmp_path):
    small, cache = tmp_path / "kubelet.conf", tmp_path / "digests.json"
    small.write_bytes(b"x")
    cache.write_text("{not json")
    assert _fact(small, cache) == hashlib.sha256(b"x").hexdigest()
    assert cache.read_text() == "{not json"  # nothing to record: left as it was


def test_a_file_changed_seconds_ago_is_not_cached(tmp_path):
    big, cache = tmp_path / "kubelet", tmp_path / "digests.json"
    big.write_bytes(b"a" * agent.CACHED_FROM)
    _fact(big, cache, settled=agent.SETTLED)
    assert not cache.exists()
