"""The sudo/SSH password: from the variable the inventory names, else asked once on a terminal (a real pty
here), never echoed; without a terminal and without the variable, no prompt (the caller then fails with
the one-line sudo message)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

SCRIPT = ("from kbootstrap.transport.ssh import password_for as p; "
          "a = p('KB_TEST_PW'); b = p('KB_TEST_PW'); print('GOT', repr(a), a == b)")


def _run_in_pty(env: dict[str, str], answer: bytes) -> str:
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(sys.executable, [sys.executable, "-c", SCRIPT], env)
    out = b""
    answered = False
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if not answered and b"password for sudo/SSH ($KB_TEST_PW is not set)" in out:
            os.write(fd, answer + b"\n")
            answered = True
    os.waitpid(pid, 0)
    return out.decode(errors="replace")


def test_asked_once_on_a_terminal_and_not_echoed():
    env = {k: v for k, v in os.environ.items() if k != "KB_TEST_PW"}
    out = _run_in_pty(env, b"s3cret")
    assert "GOT 's3cret' True" in out  # asked once, the same value for the second host
    assert out.count("password for sudo/SSH") == 1
    assert "s3cret\r\n" not in out.split("GOT")[0]  # not echoed back to the terminal


def test_from_the_environment_without_asking():
    out = _run_in_pty({**os.environ, "KB_TEST_PW": "fromenv"}, b"unused")
    assert "GOT 'fromenv' True" in out and "password for sudo/SSH" not in out


def test_no_terminal_no_prompt():
    env = {k: v for k, v in os.environ.items() if k != "KB_TEST_PW"}
    p = subprocess.run([sys.executable, "-c", SCRIPT], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=30)
    assert "GOT None" in p.stdout and "password" not in p.stderr
