"""Ctrl-C and SIGTERM: any command stops within seconds, cleans up after itself, says in one line what it
interrupted, and exits 130 (SIGINT) or 143 (SIGTERM). Installed once, at the CLI's edge (`install`).

- Both signals raise KeyboardInterrupt in the main thread, so every `finally` and `except BaseException` cleanup runs
  (the runner's temp folder, atomic writes' temp files, the BM25 index build's temp folder).
- The in-process JVM (Pyserini's Lucene) is kept off the signals with `-Xrs`. Left alone it installs its own SIGINT
  and SIGTERM handlers, which end the process from a JVM thread with no Python cleanup at all: exit 130/143 with the
  temp folders left behind, now and then a SIGSEGV (exit 134, `hs_err_pid*.log`) or a deadlock with the interpreter.
- Once a command ends after an interrupt, the process leaves with `os._exit`: a normal interpreter shutdown with a
  JVM inside is what deadlocked.
- A main thread inside one long native call (a JVM or torch call) meets Python's handler only when the call returns.
  A watchdog thread, woken by the signal's wakeup byte, ends the process GRACE_S seconds after the signal if the
  command has not ended by then, removing the temp folders registered with `removed_on_hard_exit` first.
- Temp folders are named with their owner's process id (corpus.paths.temp_name), so the next start can sweep those
  whose owner is gone (corpus.paths.sweep_stale) without touching a run in progress beside it.
"""

import os
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

GRACE_S = 5.0
SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
_state: dict = {"signum": None, "what": "", "installed": False}
_temps: set[Path] = set()


def keep_jvm_off_signals() -> None:
    """Add `-Xrs` to the options of the JVM pyjnius will start (a no-op once a JVM runs or without pyjnius)."""
    try:
        import jnius_config  # configuration only: importing it starts no JVM
    except ImportError:
        return
    if not jnius_config.vm_running and "-Xrs" not in jnius_config.get_options():
        jnius_config.add_options("-Xrs")


def install(what: str) -> None:
    """Route SIGINT and SIGTERM to KeyboardInterrupt and start the watchdog. `what`: the one-line name of the command."""
    _state.update(signum=None, what=what)
    keep_jvm_off_signals()
    if _state["installed"]:
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)
    threading.Thread(target=_watchdog, args=(read_fd,), name="interrupt-watchdog", daemon=True).start()
    _state["installed"] = True


def interrupted() -> int | None:
    """The signal that interrupted this process, if one did."""
    return _state["signum"]


def exit_code(signum: int) -> int:
    return 128 + signum


def message(signum: int, forced: bool = False) -> str:
    what = _state["what"]
    what = what if len(what) <= 160 else what[:157] + "..."
    tail = f" (forced after {GRACE_S:g} s: a native call did not return)" if forced else ""
    return f"interrupted by {SIGNALS.get(signum, signum)}: {what}{tail}"


def finish(code) -> None:
    """End the process after the command: normally `SystemExit(code)`; after an interrupt, one line on stderr and
    `os._exit(128 + signal)` (no interpreter shutdown, which can deadlock with a JVM inside)."""
    signum = _state["signum"]
    if signum is None and code == 130:  # a KeyboardInterrupt nobody's handler saw (raised before install)
        signum = signal.SIGINT
    if signum is None:
        raise SystemExit(code)
    _leave(signum, forced=False)


@contextmanager
def removed_on_hard_exit(path: Path):
    """While inside, the watchdog removes `path` if it has to end the process without waiting for the cleanup."""
    _temps.add(Path(path))
    try:
        yield path
    finally:
        _temps.discard(Path(path))


def _on_signal(signum, frame) -> None:
    if _state["signum"] is not None:  # a second signal while cleaning up: stop now
        _leave(_state["signum"], forced=True)
    _state["signum"] = signum
    raise KeyboardInterrupt


def _watchdog(read_fd: int) -> None:
    signum = None
    while signum is None:
        # A signal whose handler is no longer ours is someone else's to handle: the training loop takes SIGINT to
        # finish its step and save, which may take longer than the grace period.
        signum = next((b for b in os.read(read_fd, 64) if b in SIGNALS and signal.getsignal(b) is _on_signal), None)
    time.sleep(GRACE_S)  # the command's own cleanup runs meanwhile; a command that ends in time never gets here
    _leave(_state["signum"] or signum, forced=True)


def _leave(signum: int, forced: bool) -> None:
    for p in list(_temps):
        shutil.rmtree(p, ignore_errors=True)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        os.write(2, (message(signum, forced) + "\n").encode("utf-8", "replace"))
    finally:
        os._exit(exit_code(signum))
