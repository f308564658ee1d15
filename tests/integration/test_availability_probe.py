"""The availability probe against a real HTTP server on this machine that stops answering for a while: the
failures and the longest gap it reports match the outage it was given; and the `verify --watch` command line."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import time

import pytest

from kbootstrap.errors import Refused
from kbootstrap.verify.availability import Figures, Probe, Sample, Target
from tests.conftest import kb


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(port: int) -> http.server.ThreadingHTTPServer:
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_outage_shows_as_failures_and_a_gap_as_long_as_it_was():
    port = _free_port()
    server = _serve(port)
    with Probe([Target("local", f"http://127.0.0.1:{port}/")], rate=20, timeout=0.5) as probe:
        time.sleep(1.0)
        server.shutdown()
        server.server_close()  # refused from now on
        time.sleep(1.0)
        server = _serve(port)
        time.sleep(1.0)
    server.shutdown()
    server.server_close()
    (f,) = probe.figures()
    assert 50 <= f.requests <= 62, f.line()  # 20/s for ~3 s
    assert 14 <= f.failures <= 24, f.line()  # ~1 s of 20/s
    assert 0.9 <= f.longest_gap <= 1.4, f.line()
    # Refused while nothing listens; a request in flight when the server closed may be reset.
    assert set(f.errors) <= {"connection refused", "connection reset"} and f.errors["connection refused"] >= 14


def test_figures_count_the_gap_from_the_start_and_to_the_end():
    f = Figures("t", [Sample(0.1, 0.2, True), Sample(0.2, 0.3, False, "timed out"), Sample(0.3, 0.4, True)], 2.0)
    assert (f.requests, f.failures) == (3, 1)
    assert f.longest_gap == pytest.approx(1.7)  # from the last answer (0.3) to the end (2.0)
    assert Figures("none", [Sample(0.1, 2.1, False, "timed out")], 3.0).longest_gap == 3.0
    assert "1 failed, longest gap 1.7 s (1× timed out)" in f.line()


def test_bad_targets_and_rates_are_refused():
    with pytest.raises(Refused, match="--url"):
        Target("x", "ftp://host/")
    with pytest.raises(Refused, match="--rate"):
        Probe([Target("x", "http://127.0.0.1/")], rate=0)


# In a network namespace of its own (loopback only): the inventory's API address is unreachable there at once,
# and no packet leaves this machine; the workload URL is a web server started in that namespace.
NETNS = ("unshare", "-n", "sh", "-c",
         'ip link set lo up && python3 -m http.server --bind 127.0.0.1 8089 >/dev/null 2>&1 & s=$!; sleep 1; '
         '"$@"; rc=$?; kill $s; exit $rc', "sh")


def test_verify_watch_prints_the_figures_and_fails_on_a_failed_request(tmp_path):
    """No cluster runs: the API target fails, the web server answers; exit 1, both targets' figures in the JSON."""
    from kbootstrap.model.spec import load_inventory
    from kbootstrap.pki.issue import ensure_pki
    from tests.conftest import REPO

    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root")
    inventory = REPO / "inventories" / "lab-mini.yaml"
    spec = load_inventory(inventory)
    home = tmp_path / "home"
    ensure_pki(spec, home / "clusters" / spec.cluster.name)
    p = kb("verify", "-i", str(inventory), "--watch", "1.5", "--rate", "4", "--timeout", "0.3",
           "--url", "http://127.0.0.1:8089/", "--output", "json", home=home, prefix=NETNS, timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    api, local = json.loads(p.stdout)["targets"]
    assert api["target"].startswith("API /version through") and api["failures"] == api["requests"] >= 5, api
    assert local["requests"] >= 5 and local["failures"] == 0 and local["longest_gap_s"] < 0.6, local

    p = kb("verify", "-i", str(inventory), "--watch", "1", home=home, prefix=NETNS, timeout=60)
    assert p.returncode == 1 and "longest gap" in p.stdout and "Traceback" not in p.stderr, p.stdout + p.stderr


def test_verify_watch_refuses_bad_input_before_probing(tmp_path):
    from tests.conftest import REPO

    inventory = str(REPO / "inventories" / "lab-mini.yaml")
    p = kb("verify", "-i", inventory, "--watch", "1", "--url", "gopher://x", home=tmp_path, check=False)
    assert p.returncode == 2 and "--url" in p.stderr and "Traceback" not in p.stderr, p.stderr
    p = kb("verify", "-i", inventory, "--watch", "1", home=tmp_path / "empty", check=False)
    assert p.returncode == 2 and "no cluster CA" in p.stderr and "Traceback" not in p.stderr, p.stderr
    p = kb("verify", "-i", inventory, "--url", "http://127.0.0.1:1/", home=tmp_path, check=False)
    assert p.returncode == 2 and "--watch" in p.stderr, p.stderr
