"""Several processes on one feature cache: advisory locks, per-process temporaries, barriers.

Each shard is computed under an exclusive ``fcntl.flock``; every temporary lives in the writing
process's own work folder, and clean-up removes only temporaries of processes that are gone
(:data:`STALE_SECONDS` for other hosts). :func:`barrier` turns a dead peer of an ``accelerate launch``
into a RuntimeError saying the finished shards are kept. Without ``fcntl`` (Windows) locks are no-ops.
The rules in full: docs/design.md.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

#: a temporary of another host is considered abandoned after this many seconds
STALE_SECONDS = 24 * 3600
_WORK_RE = re.compile(r"^\.work-(?P<host>.+)-(?P<pid>\d+)$")
_JSON_TMP_RE = re.compile(r"\.tmp-(?P<pid>\d+)-[0-9a-f]+$")


def _host() -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"


def work_dir(shards_dir: Path) -> Path:
    """This process's folder for temporaries under ``shards_dir`` (created)."""
    path = Path(shards_dir) / f".work-{_host()}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_alive(pid: int) -> bool:
    """True when a process with this pid runs on this host (or cannot be probed)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def _abandoned(path: Path, host: str | None, pid: int | None) -> bool:
    if pid is not None and (host is None or host == _host()):
        return not pid_alive(pid)
    try:
        return time.time() - path.stat().st_mtime > STALE_SECONDS
    except OSError:
        return False


def clean_temporaries(shards_dir: Path) -> list[Path]:
    """Remove temporaries whose owning process is gone; returns what was removed."""
    removed = []
    if not Path(shards_dir).is_dir():
        return removed
    for path in Path(shards_dir).iterdir():
        work = _WORK_RE.match(path.name)
        tmp_json = _JSON_TMP_RE.search(path.name)
        if work:
            gone = _abandoned(path, work["host"], int(work["pid"]))
        elif tmp_json:
            gone = _abandoned(path, None, int(tmp_json["pid"]))
        else:
            gone = path.name.startswith("tmp")  # datasets' map temporary of an older version's killed run
        if not gone:
            continue
        try:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


class FileLock:
    """An exclusive ``flock`` on ``path`` (created if missing).

    ``remove=True`` deletes the file on release, while still holding the lock. That is safe because
    :meth:`acquire` re-checks, once locked, that ``path`` still names the file it locked: a process that
    waited on a file removed meanwhile finds it gone (or replaced) and locks the current one instead,
    so two processes never both hold "the" lock on two different files.
    """

    def __init__(self, path: Path, remove: bool = False):
        self.path = Path(path)
        self.remove = remove
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; False when ``blocking=False`` and another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is None:
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:  # removed by the holder we waited for
                same = False
            if same:
                break
            os.close(fd)  # locked a file that is no longer at self.path: lock the current one
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            if self.remove and fcntl is not None:
                try:  # still locked: nobody can be using this file as their lock right now
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def locked(path: Path, remove: bool = False):
    """``with locked(folder / ".lock"):`` an exclusive, blocking lock for a short critical section
    (``remove=True``: the lock file is deleted afterwards, see :class:`FileLock`)."""
    lock = FileLock(path, remove=remove)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


def barrier(accelerator, where: Path) -> None:
    """``accelerator.wait_for_everyone()``; a RuntimeError naming ``where`` when another process died."""
    try:
        accelerator.wait_for_everyone()
    except RuntimeError as err:  # gloo: "Connection closed by peer"; NCCL: DistBackendError (a RuntimeError)
        raise RuntimeError(
            f"process {accelerator.process_index} of {accelerator.num_processes}: another process of this "
            f"extraction stopped before {where} was complete ({str(err).splitlines()[0][:200]}); the shards "
            "already finished are kept: re-run the same extraction (any number of processes) to resume"
        ) from err
