"""SSH transport on paramiko: verified host keys, key or agent auth, sudo, a bastion, bounded retries.

Every failure becomes a TransportError with one line naming the host and what to do about it.
"""

from __future__ import annotations

import base64
import getpass
import logging
import os
import sys
import threading
import time
from pathlib import Path

import paramiko

from kbootstrap.errors import TransportError
from kbootstrap.model.spec import SSHSettings
from kbootstrap.transport.base import CommandResult, RoundTrips, quote

# paramiko logs tracebacks from its transport thread for failures we already turn into one-line errors.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)


class _RecordNewHostKey(paramiko.MissingHostKeyPolicy):
    """--accept-new-host-keys: record a host's key the first time it is seen (never a changed one)."""

    def __init__(self, known_hosts: Path | None):
        self.known_hosts = known_hosts
        self.lock = threading.Lock()

    def missing_host_key(self, client, hostname, key):  # noqa: ANN001 - paramiko's signature
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self.known_hosts is not None:
            with self.lock:
                self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
                with open(self.known_hosts, "a") as f:
                    f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class SSHTransport:
    def __init__(self, host: str, address: str, ssh: SSHSettings, *, host_key: str | None = None,
                 accept_new_host_keys: bool = False, retries: int = 2):
        self.host = host
        self.address = address
        self.ssh = ssh
        self.host_key = host_key
        self.accept_new = accept_new_host_keys
        self.retries = retries
        self.round_trips = RoundTrips()
        self._client: paramiko.SSHClient | None = None
        self._bastion: paramiko.SSHClient | None = None
        self._connecting = threading.Lock()  # two commands at once (preflight beside the facts) share one connection
        self._password = password_for(ssh.password_env) if ssh.password_env else None

    # --- connection -----------------------------------------------------------------------------------
    def _new_client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        if self.ssh.known_hosts and self.ssh.known_hosts.exists():
            client.get_host_keys().load(str(self.ssh.known_hosts))
        if self.host_key:  # a key pinned in the inventory: "ssh-ed25519 AAAA..."
            kind, _, b64 = self.host_key.partition(" ")
            client.get_host_keys().add(self._known_name(), kind, paramiko.PKey.from_type_string(kind, _b64(b64)))
        client.set_missing_host_key_policy(
            _RecordNewHostKey(self.ssh.known_hosts) if self.accept_new else paramiko.RejectPolicy()
        )
        return client

    def _known_name(self) -> str:
        return self.address if self.ssh.port == 22 else f"[{self.address}]:{self.ssh.port}"

    def connect(self) -> paramiko.SSHClient:
        with self._connecting:
            return self._connect()

    def _connect(self) -> paramiko.SSHClient:
        if self._client is not None and self._client.get_transport() and self._client.get_transport().is_active():
            return self._client
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                self._client = self._connect_once()
                return self._client
            except TransportError:
                raise  # host key and auth problems do not get better by retrying
            except (OSError, paramiko.SSHException, EOFError) as e:
                last = e
                time.sleep(min(2**attempt, 5))
        raise TransportError(self.host, f"cannot reach {self.address}:{self.ssh.port} over SSH ({_short(last)}); "
                             f"is the host up and sshd listening?")

    def _connect_once(self) -> paramiko.SSHClient:
        sock = None
        b = self.ssh.bastion
        if b is not None:
            self._bastion = paramiko.SSHClient()
            self._bastion.load_system_host_keys()
            if self.ssh.known_hosts and self.ssh.known_hosts.exists():
                self._bastion.get_host_keys().load(str(self.ssh.known_hosts))
            self._bastion.set_missing_host_key_policy(paramiko.RejectPolicy())
            self._bastion.connect(b.host, port=b.port, username=b.user or self.ssh.user,
                                  key_filename=str(b.key or self.ssh.key) if (b.key or self.ssh.key) else None,
                                  timeout=self.ssh.connect_timeout)
            sock = self._bastion.get_transport().open_channel("direct-tcpip", (self.address, self.ssh.port), ("", 0))
        client = self._new_client()
        try:
            client.connect(
                self.address, port=self.ssh.port, username=self.ssh.user,
                key_filename=str(self.ssh.key) if self.ssh.key else None,
                password=self._password, look_for_keys=self.ssh.key is None, allow_agent=True,
                timeout=self.ssh.connect_timeout, banner_timeout=self.ssh.connect_timeout,
                auth_timeout=self.ssh.connect_timeout, sock=sock,
            )
        except paramiko.BadHostKeyException as e:
            raise TransportError(self.host, f"host key of {self.address} CHANGED (got {e.key.get_name()} "
                                 f"{e.key.fingerprint}); if the host was rebuilt, remove its old line from "
                                 f"{self.ssh.known_hosts or 'known_hosts'}") from None
        except paramiko.SSHException as e:
            if "not found in known_hosts" in str(e):
                raise TransportError(self.host, f"unknown host key for {self.address}; verify it and add it to "
                                     f"{self.ssh.known_hosts or 'known_hosts'}, pin it as the node's host_key, "
                                     "or run once with --accept-new-host-keys") from None
            if isinstance(e, paramiko.AuthenticationException):
                raise TransportError(self.host, f"authentication failed for {self.ssh.user}@{self.address} "
                                     f"with key {self.ssh.key or '(agent/default keys)'}") from None
            raise
        except TimeoutError:
            raise OSError(f"connect timed out after {self.ssh.connect_timeout:g}s") from None
        return client

    # --- commands -------------------------------------------------------------------------------------
    def run(self, argv: list[str], *, sudo: bool = False, stdin: bytes = b"", timeout: float = 120) -> CommandResult:
        command = quote(argv)
        if sudo and self.ssh.sudo and self.ssh.user != "root":
            # -S reads a password from stdin only when one is configured; -n fails fast instead of prompting.
            command = ("sudo -S -p '' -- " if self._password else "sudo -n -- ") + command
            if self._password:
                stdin = self._password.encode() + b"\n" + stdin
        client = self.connect()
        self.round_trips.add(argv[0])
        try:
            chan = client.get_transport().open_session(timeout=self.ssh.connect_timeout)
            chan.settimeout(timeout)
            chan.exec_command(command)
            if stdin:
                _send_all(chan, stdin)
            chan.shutdown_write()
            out, err = _drain(chan, timeout)
            rc = chan.recv_exit_status()
        except (OSError, paramiko.SSHException, EOFError) as e:
            self.close()
            raise TransportError(self.host, f"connection lost while running {argv[0]} ({_short(e)})") from None
        if sudo and rc != 0 and b"a password is required" in err:
            raise TransportError(self.host, f"sudo needs a password for {self.ssh.user}; allow NOPASSWD or set "
                                 "ssh.password_env to the name of a variable holding it")
        return CommandResult(self.host, " ".join(argv[:2]), rc, out, err)

    def close(self) -> None:
        for c in (self._client, self._bastion):
            if c is not None:
                c.close()
        self._client = self._bastion = None


def _send_all(chan: paramiko.Channel, data: bytes) -> None:
    """Channel.sendall re-slices the remaining bytes after every packet: quadratic for a 100 MB payload
    (binaries). Zero-copy memoryview slices keep it linear."""
    view = memoryview(data)
    while view:
        sent = chan.send(view[: 1 << 18])
        view = view[sent:]


_prompted: dict[str, str] = {}
_prompt_lock = threading.Lock()


def password_for(variable: str) -> str | None:
    """The password from the environment variable the inventory names; if it is unset and kbootstrap runs on
    a terminal, asked once per variable (not echoed, never logged) and reused for every host."""
    value = os.environ.get(variable)
    if value is not None or not sys.stdin.isatty():
        return value
    with _prompt_lock:
        if variable not in _prompted:
            _prompted[variable] = getpass.getpass(f"password for sudo/SSH (${variable} is not set): ")
        return _prompted[variable]


def _drain(chan: paramiko.Channel, timeout: float) -> tuple[bytes, bytes]:
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            chan.close()
            raise OSError(f"no answer within {timeout:g}s")
        if chan.recv_ready():
            out += chan.recv(65536)
        elif chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        elif chan.eof_received or chan.closed:
            # Not on the exit status: sshd sends it as soon as the command exits, while up to a window of
            # output can still be in flight. The channel's EOF comes after all data.
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            break
        else:
            chan.status_event.wait(0.01)
    return bytes(out), bytes(err)


def _b64(s: str) -> bytes:
    return base64.b64decode(s.strip())


def _short(e: Exception | None) -> str:
    if e is None:
        return "unknown error"
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:160]
