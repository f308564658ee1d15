"""The controller-side record of runs: a lock so two runs never touch one cluster at once, a journal of
what finished on which host, and where each run's full log goes (written through `logging`: engine/session.py)
— all in the cluster directory."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from pathlib import Path

from kbootstrap.engine.localfs import private_dirs
from kbootstrap.errors import Refused

SETS_UP = ("init", "join", "join --local")  # the commands whose `files` phase configures a host
UNDOES = ("reset", "reset --local")
FILES_PHASE = "files"


class LockHeld(Refused):
    pass


class ClusterLock:
    """An exclusive lock file holding pid, machine and start time. A lock whose process is gone (on this
    machine) is stale and is broken with a message; a live one stops the run."""

    def __init__(self, cluster_dir: Path, command: str):
        self.path = cluster_dir / "lock"
        self.command = command
        self.broke_stale: str | None = None

    def __enter__(self) -> ClusterLock:
        private_dirs(self.path.parent)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
              "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                holder = self._holder()
                if holder.get("host") == socket.gethostname() and not _alive(holder.get("pid", -1)):
                    self.broke_stale = (f"broke a stale lock left by pid {holder.get('pid')} "
                                        f"({holder.get('command', '?')}, started {holder.get('started', '?')}), "
                                        "which is no longer running")
                    self.path.unlink(missing_ok=True)
                    continue
                raise LockHeld(
                    f"another kbootstrap run holds the lock of this cluster: pid {holder.get('pid')} on "
                    f"{holder.get('host')} ({holder.get('command', '?')}, started {holder.get('started', '?')}). "
                    f"Wait for it; if it is gone (another machine, a reboot), remove {self.path}"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return self
        raise LockHeld(f"cannot take the lock {self.path}")

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


class Journal:
    """Append-only JSON lines: one per host and phase finished (or failed), per run."""

    def __init__(self, cluster_dir: Path, command: str):
        self.run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
        self.path = cluster_dir / "journal.jsonl"
        self.log_path = cluster_dir / "runs" / f"{self.run_id}.log"
        private_dirs(self.log_path.parent)
        self.command = command

    def record(self, host: str, phase: str, ok: bool, changes: int, error: str | None = None, *,
               applied: bool) -> None:
        """applied: the run changed hosts (False for plan and --dry-run, whose entries say what would be done)."""
        entry = {"run": self.run_id, "command": self.command, "applied": applied, "host": host, "phase": phase,
                 "status": "done" if ok else "failed", "changes": changes, "error": error,
                 "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def configured_hosts(self) -> set[str]:
        """Hosts whose files a run of init or join really wrote (its `files` phase done, not a dry run), with no
        reset finished on them since: the hosts whose ports kbootstrap's own services may hold. Entries from
        before dry runs were marked (no `applied`) count as applied; `plan` never applies."""
        configured: set[str] = set()
        for e in self.entries():
            if not e.get("applied", e.get("command") != "plan") or e.get("status") != "done":
                continue
            if e.get("command") in SETS_UP and e.get("phase") == FILES_PHASE:
                configured.add(e["host"])
            elif e.get("command") in UNDOES:
                configured.discard(e["host"])
        return configured
