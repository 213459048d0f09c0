"""The repository's root, and atomic writes (temp file + rename) for everything versebench produces.

The cache root is not decided here: every function that caches takes it as `home`, and only the CLI edge reads it
from the environment (harness/cli/home.py), so a library call never writes where the caller did not say."""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp file sits beside the target so the rename never crosses filesystems.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); a report or checkpoint gets the permissions any new file would.
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    """The process's umask (reading it means setting it; it is put back at once)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- temp folders named by their owner (a killed run's are swept by the next start) -------------------------------

def temp_name(stem: str) -> str:
    """A hidden temp folder name that records its owner: `.tmp-<stem>.<pid>`."""
    return f".tmp-{stem}.{os.getpid()}"


def sweep_stale(root: Path) -> list[Path]:
    """Remove `root/.tmp-*.<pid>` folders whose process is gone (left by a killed run); returns what was removed."""
    removed = []
    for p in Path(root).glob(".tmp-*.*") if Path(root).is_dir() else ():
        pid = p.name.rsplit(".", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
