"""The repository's root, and atomic writes (temp file + rename) for everything versebench produces.

The cache root is not decided here: every function that caches takes it as `home`, and only the CLI edge reads it
from the environment (harness/cli/home.py), so a library call never writes where the caller did not say."""

import contextlib
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


# ---- outputs: checked before a long run, written whole or not at all ------------------------------------------------

def check_writable(path, what: str, *, folder: bool) -> Path:
    """BadInput now, before any long work, when `path` could not be written later: an existing path of the wrong
    kind (a file where a folder is wanted, or the reverse), or a nearest existing folder that is not writable (a
    read-only folder or filesystem, no permission). A full disk cannot be known in advance: staged writes below
    make it fail without leaving anything that looks complete."""
    from corpus.errors import at

    p = Path(path)
    if p.exists() or p.is_symlink():
        if folder and not p.is_dir():
            raise at(p, None, f"{what} wants a folder; this is a file")
        if not folder and p.is_dir():
            raise at(p, None, f"{what} wants a file; this is a folder")
    nearest = p if folder and p.is_dir() else p.absolute().parent
    while not nearest.exists():
        nearest = nearest.parent
    if not nearest.is_dir():
        raise at(nearest, None, f"{what}: {nearest} is a file, so {p} cannot be made")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise at(nearest, None, f"{what}: cannot write here (read-only or no permission)")
    return p


@contextlib.contextmanager
def staged_folder(final):
    """Yield a temp folder beside `final`; once the block ends without an error, its files move into `final` (the
    whole folder by one rename where `final` does not exist yet, else file by file, each an atomic rename that needs
    no new space). On an error nothing of it is left: a full disk half way through leaves no folder that looks
    complete (compare.md linking a PNG never written, summary.csv without per_query.csv, half an export)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(final.parent)
    tmp = final.parent / temp_name(final.name)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for p in tmp.rglob("*"):  # data on disk before a rename makes it visible
            if p.is_file():
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
        if not final.exists() or (final.is_dir() and not any(final.iterdir())):
            os.rename(tmp, final)  # onto an empty folder too: one rename either way
            return
        for p in sorted(tmp.rglob("*")):
            target = final / p.relative_to(tmp)
            if p.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                os.replace(p, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_many(files: dict) -> list[Path]:
    """Several files that belong together (a verdict and its summary): every one written to a temp file beside its
    target first, then all renamed into place; a failure while writing leaves none of them."""
    temps = []
    try:
        for path, data in files.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
            temps.append((tmp, path))
            with open(tmp, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in temps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
    return [path for _, path in temps]
