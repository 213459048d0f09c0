"""Cache entries that cannot lie: every entry under the cache root carries a manifest of its files' sha256, written
last, and is checked before it is read.

An entry is a set of files under one folder (`root`): a single file beside its sidecar manifest (`NAME.sha256.json`),
or a whole folder (a Lucene index) holding its own `sha256.json`. The manifest is written after every file it names,
so an entry whose writer died half way has none, and is rebuilt. On load the bytes are read, hashed and only then
parsed, from the same bytes (never read twice, so nothing can change in between).

What this catches: damage (a torn write, a full disk, a bad sector, a file edited or deleted by hand, a folder where
a file should be). What it cannot catch: someone who can write the cache root can write a matching manifest too, so a
poisoned cache can still give wrong numbers; what keeps it from running code is that nothing read from the cache
is ever a pickle (np.load with allow_pickle=False, safetensors, JSON, Lucene). See the README's trust model.

A failed check is one notice line on stderr and a rebuild: the library has no other channel to the user that every
cache call could reach, and the caller gets the same numbers either way.
"""

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from corpus.paths import atomic_write_bytes, atomic_write_text, sweep_stale, temp_name

FOLDER_MANIFEST = "sha256.json"
FORMAT = 1


def notice(message: str) -> None:
    """One line on stderr: a cache entry was damaged and is being rebuilt (the numbers do not change)."""
    print(f"notice: {message}", file=sys.stderr, flush=True)


def sidecar(path: Path) -> Path:
    """The manifest of a single-file entry."""
    return path.parent / f"{path.name}.sha256.json"


def _digest(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _file_digest(path: Path) -> dict:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            n += len(block)
    return {"sha256": h.hexdigest(), "bytes": n}


def _write_manifest(manifest: Path, files: dict) -> None:
    atomic_write_text(manifest, json.dumps({"format": FORMAT, "files": files}, indent=1, sort_keys=True) + "\n")


def _read_manifest(manifest: Path) -> dict | None:
    try:
        got = json.loads(manifest.read_bytes())
        files = got["files"]
        if got.get("format") == FORMAT and isinstance(files, dict) and all(
                isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in files.values()):
            return files
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


# ---- single files ---------------------------------------------------------------------------------------------------

def write_file(path: Path, data: bytes) -> Path:
    """Write one cache file, then its manifest (last)."""
    clear_way(path.parent)
    atomic_write_bytes(path, data)
    _write_manifest(sidecar(path), {path.name: _digest(data)})
    return path


def read_file(path: Path, what: str) -> bytes | None:
    """The bytes of a cache file if its manifest vouches for them; None (after a notice, if something was there) when
    the entry is missing, damaged or has no manifest: the caller rebuilds it."""
    path = Path(path)
    if not path.exists() and not sidecar(path).exists():
        return None  # never built: no notice
    problem, data = None, None
    files = _read_manifest(sidecar(path))
    if files is None and _just_written(path):
        return None  # another process is between writing the file and its manifest: rebuild quietly, same bytes
    if files is None or set(files) != {path.name}:
        problem = "no manifest: written by an older versebench, or cut short"
    else:
        try:
            data = path.read_bytes()
        except OSError as e:
            problem = f"unreadable ({e.strerror or e})"
        else:
            if _digest(data) != {k: files[path.name].get(k) for k in ("sha256", "bytes")}:
                problem = "sha256 differs from its manifest"
    if problem:
        notice(f"{what} cache {path} fails its check ({problem}); rebuilding it")
        discard(path)
        discard(sidecar(path))
        return None
    return data


def _just_written(path: Path, seconds: float = 30.0) -> bool:
    import time

    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False


# ---- folders --------------------------------------------------------------------------------------------------------

def seal_folder(folder: Path) -> None:
    """Write the manifest of every file under `folder` (its last file). Called on a temp folder before the rename that
    makes it visible."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != FOLDER_MANIFEST:
            files[p.relative_to(folder).as_posix()] = _file_digest(p)
    _write_manifest(folder / FOLDER_MANIFEST, files)


def check_folder(folder: Path, what: str) -> bool:
    """True when the folder entry is intact. False when it is absent (silently) or damaged: then a notice, and the
    entry is moved out of the way so a rebuild can take its place."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return False
    problem = None
    files = _read_manifest(folder / FOLDER_MANIFEST) if folder.is_dir() else None
    if not folder.is_dir():
        problem = "not a folder"
    elif files is None:
        problem = "no manifest: written by an older versebench, or cut short"
    else:
        for name, want in files.items():
            p = folder / name
            try:
                got = _file_digest(p) if p.is_file() and not p.is_symlink() else None
            except OSError:
                got = None
            if got is None:
                problem = f"{name} is missing"
                break
            if got != {k: want.get(k) for k in ("sha256", "bytes")}:
                problem = f"{name}: sha256 differs from its manifest"
                break
    if problem:
        notice(f"{what} cache {folder} fails its check ({problem}); rebuilding it")
        discard(folder)
        return False
    return True


# ---- housekeeping ---------------------------------------------------------------------------------------------------

def discard(path: Path) -> None:
    """Remove a cache file or folder without a window where a half-deleted folder is visible: it is renamed to a
    temp name first (another process may have done so already: that is fine)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        trash = path.parent / temp_name(f"{path.name}-trash")
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def clear_way(folder: Path) -> None:
    """`folder` as a folder: a file (or a dangling link) where a cache folder belongs is damage, removed with a
    notice; then the folder and its parents are made (with the umask's permissions)."""
    folder = Path(folder)
    for p in reversed((folder, *folder.parents)):
        if (p.is_file() or p.is_symlink()) and not p.is_dir():
            notice(f"cache folder {p} is a file; replacing it with a folder")
            p.unlink()
            break
    folder.mkdir(parents=True, exist_ok=True)


def publish_folder(tmp: Path, final: Path, manifest: dict) -> Path:
    """Finish a folder built in `tmp` (from `temp_folder`): its manifest.json, then the seal (last: a folder without
    it was never finished), then the rename that makes it visible. Another process that finished the same folder
    first wins, and this copy is dropped."""
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    seal_folder(tmp)
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp)
    return final


def temp_folder(final: Path) -> Path:
    """A fresh temp folder beside `final` (same filesystem, so the rename into place is atomic)."""
    clear_way(final.parent)
    sweep_stale(final.parent)  # what a killed build left behind (its process is gone)
    tmp = final.parent / temp_name(final.name)
    shutil.rmtree(tmp, ignore_errors=True)  # this process's own, from a build that failed
    tmp.mkdir()  # with the umask's permissions: once renamed it is an ordinary cache folder
    return tmp
