"""Regression test for a bug found while writing `verify`: `SSHTransport.run` loses the end of a command's
output when sshd sends the exit status before the last of the data.

OpenSSH sends `exit-status` as soon as the command exits, while up to a pipe's worth (64 KiB) of its
output may still be unread on the server; `_drain` stops at the exit status once its buffers are
momentarily empty. On the lab, 400 KB outputs came back short about 1 time in 20 (by multiples of 4 KiB,
the missing bytes arriving afterwards); `ss`'s listing lost its TCP lines, the agent's JSON can lose its
end. The fix (kbootstrap/transport/ssh.py, `_drain`): stop at the channel's EOF, which comes after all the
data of both streams, and read what arrived with it:

        elif chan.eof_received or chan.closed:
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            break

(0 short outputs in 420 on the lab with it.)
"""

from __future__ import annotations

from kbootstrap.transport.ssh import _drain


class LateChannel:
    """A paramiko Channel as sshd drives it under load: the exit status first, the last of the output after
    it, one packet each time the reader waits, then EOF."""

    def __init__(self, chunks: list[bytes]):
        self.pending, self.buf = list(chunks), bytearray()
        self.eof_received, self.closed = False, False
        self.status_event = self

    def wait(self, timeout: float) -> None:  # time passes: the next packet arrives
        if self.pending:
            self.buf += self.pending.pop(0)
        else:
            self.eof_received = True

    def exit_status_ready(self) -> bool:
        return True

    def recv_ready(self) -> bool:
        return bool(self.buf)

    def recv(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def recv_stderr_ready(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def test_output_that_arrives_after_the_exit_status_is_kept():
    chunks = [b"a" * 4096] * 8
    out, err = _drain(LateChannel(chunks), timeout=5)
    assert out == b"".join(chunks) and err == b""
