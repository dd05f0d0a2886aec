"""Staging and committing an export folder: a lock, held signals, and only complete sets of files moved into place.

Everything is written into a staging folder inside the destination; :func:`commit` moves the files into place,
manifest last, under an exclusive lock on the folder with SIGINT/SIGTERM held back, so an interrupted or failed
export leaves the folder exactly as it was and two exports to one folder never interleave.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from .errors import BadArgument, ExportFailed, Terminated, raise_terminated
from .files import sha256_file

MANIFEST = "manifest.json"
STAGING_PREFIX = ".edgekit-staging-"


def stem_for(name: str, alpha: float, res: int) -> str:
    return f"{name}_a{alpha:g}_r{res}"


def _prepare_out_dir(out_dir: Path, stem: str) -> list[Path]:
    """Create ``out_dir`` if needed or explain why it cannot be used; returns the folders created, deepest first.

    A folder holding another export's manifest (another model, alpha or res) is refused: writing there would
    replace that export's manifest and leave its files undescribed. Re-exporting the same stem replaces it.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise BadArgument(f"output path {str(out_dir)!r} is a file, not a folder; choose another --out")
    old = _read_manifest(out_dir)
    if old is not None:
        try:
            ours = str(old.get("generator", "")).startswith("edgekit")
            old_stem = old.get("stem") or stem_for(old["model"], float(old["alpha"]), int(old["res"]))
        except (ValueError, AttributeError, KeyError, TypeError, OverflowError):
            ours, old_stem = False, None
        if not ours:
            raise BadArgument(
                f"{str(out_dir)!r} already holds a {MANIFEST} that edgekit did not write; choose another --out"
            )
        if old_stem != stem:
            raise BadArgument(
                f"{str(out_dir)!r} holds the export of {old_stem}; export {stem} to another --out "
                f"(or delete that folder first)"
            )
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out_dir, prefix=STAGING_PREFIX, delete=True)
        probe.close()
    except OSError as exc:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise ExportFailed(
            f"cannot write to output folder {str(out_dir)!r} ({exc.strerror or exc}); choose a writable --out"
        ) from None
    return created


def _read_manifest(out_dir: Path) -> dict | None:
    """The manifest in ``out_dir`` as a dict; {} when it exists but is unreadable; None when there is none."""
    manifest = out_dir / MANIFEST
    try:
        if not manifest.exists():
            return None
        if manifest.stat().st_size > 16 << 20:
            return {}
        data = json.loads(manifest.read_text())
    except (ValueError, OSError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def _folder_lock(out_dir: Path) -> Iterator[None]:
    """Exclusive POSIX lock on the output folder itself while files are moved into place (no lock file left)."""
    try:
        import fcntl
    except ImportError:  # Windows: renames are still atomic one by one
        yield
        return
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def _no_interrupt() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while files are renamed into place, so a signal cannot leave a mixed set.

    Python-level handlers that only record the signal: ``pthread_sigmask`` would block it for this thread alone, and
    a signal delivered to one of ONNX Runtime's or OpenMP's threads still interrupts the main one. A held signal is
    raised again, to the handler that was there before, once the renames are done.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None:  # None: installed outside Python, cannot be restored; leave it alone
            previous[signum] = signal.signal(signum, lambda s, _frame: held.append(s))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if held:
        signal.raise_signal(held[0])


@contextlib.contextmanager
def interrupts_remembered() -> Iterator[list[int]]:
    """Ctrl-C raises KeyboardInterrupt as usual and is also remembered; SIGTERM does the same (as :class:`Terminated`).

    Python swallows an exception raised inside a finalizer (``__del__``, weakref callbacks: the exporters run many),
    so a KeyboardInterrupt can vanish there; long jobs check the remembered flag between stages and before they
    commit, so a signal is never lost. Only Python's own default handlers are wrapped; a caller's are left alone.
    """
    remembered: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield remembered
        return
    installed: dict[int, Any] = {}

    def handler(signum: int, frame: object) -> None:
        remembered.append(signum)
        if signum == signal.SIGINT:
            signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt
        raise Terminated()

    for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        current = signal.getsignal(signum)
        if current is default or current is raise_terminated:
            installed[signum] = current
            signal.signal(signum, handler)
    try:
        yield remembered
    finally:
        for signum, previous in installed.items():
            signal.signal(signum, previous)


def _remove_stale_staging(out_dir: Path) -> None:
    """Staging folders of exports that were killed outright (SIGKILL, power loss) and could not clean up."""
    for path in out_dir.glob(f"{STAGING_PREFIX}*"):
        pid_text = path.name[len(STAGING_PREFIX):].split("-", 1)[0]
        try:
            os.kill(int(pid_text), 0)
            continue  # that export is still running
        except (ValueError, ProcessLookupError, OverflowError):
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue  # alive, owned by someone else


def _stale_files(out_dir: Path, names: list[str]) -> list[Path]:
    """Files the replaced export listed but this one does not write, still exactly as edgekit wrote them.

    The old manifest is untrusted (it may have been edited): a file is removed only when its name is a plain name
    in this folder and its size and sha256 still match the manifest's record. Anything else is left alone.
    """
    old = _read_manifest(out_dir) or {}
    files = old.get("files") if isinstance(old.get("files"), list) else []
    stale = []
    for entry in files:
        if not isinstance(entry, dict):
            continue
        name = entry.get("name")
        if not isinstance(name, str) or Path(name).name != name or name in names or name == MANIFEST:
            continue
        path = out_dir / name
        try:
            if (path.is_file() and not path.is_symlink() and path.stat().st_size == entry.get("bytes")
                    and sha256_file(path) == entry.get("sha256")):
                stale.append(path)
        except OSError:
            continue
    return stale


def _commit(staging: Path, out_dir: Path, names: list[str]) -> None:
    """Move staged files into place, manifest last: the manifest always describes a complete set.

    Files the replaced export listed in its manifest but this one did not write (another format set) are removed
    after the new manifest is in place, so the folder never holds a stale model the manifest does not describe.
    Files edgekit did not write (or that changed since) are never touched.
    """
    with _folder_lock(out_dir), _no_interrupt():
        stale = _stale_files(out_dir, names)
        for name in names:
            os.replace(staging / name, out_dir / name)
        for path in stale:
            with contextlib.suppress(OSError):
                path.unlink()
