"""Files edgekit reads and writes: one implementation of each careful operation.

- :func:`check_input_file`: a path the user gave us to read, with a one-line error for every way it can be wrong
  (missing, a folder, a FIFO or device, unreadable, empty, a name the file system refuses).
- :func:`atomic_write`: a temporary file in the destination folder, renamed into place when complete, so a failure,
  a signal or a full disk never leaves half a file under the real name.
- :func:`append_csv_row`: one row appended under an exclusive lock, header first when the file is new, refusing a
  file with other columns; :func:`check_csv_target` refuses a bad target before any work is spent.
- :func:`write_error`: any ``OSError`` on write (ENOSPC, EDQUOT, EROFS, EACCES, ENAMETOOLONG) as one line.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterator, Mapping, Sequence

from .errors import BadArgument, BadModelFile, EdgekitError

_WRITE_HINTS = {
    errno.ENOSPC: "the disk is full; free some space or write somewhere else",
    errno.EDQUOT: "the disk quota is exceeded; free some space or write somewhere else",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "permission denied; choose a folder you can write to",
    errno.ENAMETOOLONG: "the name is longer than the file system allows; choose a shorter path",
}


def write_error(exc: OSError, what: str, cls: type[EdgekitError] = EdgekitError) -> EdgekitError:
    """A one-line error for an OSError raised while writing ``what``."""
    hint = _WRITE_HINTS.get(exc.errno or 0, exc.strerror or str(exc))
    return cls(f"cannot write {what}: {hint}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_input_file(path: str | os.PathLike, what: str, *, hint: str = "", cls: type[EdgekitError] = BadModelFile,
                     allow_empty: bool = False) -> Path:
    """``path`` as a readable regular file, or ``cls`` with one line naming the problem."""
    try:
        file = Path(os.fspath(path))
    except TypeError:
        raise cls(f"{what} must be a path, got {path!r}") from None
    if not str(path).strip():
        raise cls(f"{what} is an empty path; pass a file{hint}")
    fix = f"; {hint}" if hint else ""
    try:
        info = file.stat()
    except FileNotFoundError:
        raise cls(f"{what} {str(file)!r} does not exist{fix}") from None
    except NotADirectoryError:
        raise cls(f"{what} {str(file)!r} does not exist (a part of the path is a file, not a folder){fix}") from None
    except OSError as exc:  # ENAMETOOLONG, EACCES on a parent folder, ELOOP
        raise cls(f"{what} {str(file)!r} cannot be read: {_reason(exc)}{fix}") from None
    if stat.S_ISDIR(info.st_mode):
        raise cls(f"{what} {str(file)!r} is a folder: it is a directory, not a file; pass one file inside it")
    if not stat.S_ISREG(info.st_mode):
        raise cls(f"{what} {str(file)!r} is not a regular file (a device, FIFO or socket){fix}")
    if not os.access(file, os.R_OK):
        raise cls(f"{what} {str(file)!r} cannot be read: permission denied{fix}")
    if info.st_size == 0 and not allow_empty:
        raise cls(f"{what} {str(file)!r} is empty (0 bytes){fix}")
    return file


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return "the name is longer than the file system allows"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    return exc.strerror or str(exc)


def check_output_folder(folder: str | os.PathLike, flag: str) -> Path:
    """A folder we will create or write into: not empty text, not a file, creatable. Returns the Path."""
    text = os.fspath(folder)
    if not str(text).strip():
        raise BadArgument(f"{flag} is empty; pass a folder path (use '.' for the current folder)")
    path = Path(text)
    try:
        if path.exists() and not path.is_dir():
            raise BadArgument(f"{flag} {str(path)!r} is a file; pass a folder")
    except OSError as exc:
        raise BadArgument(f"{flag} {str(path)!r} cannot be used: {_reason(exc)}") from None
    return path


def umask_mode(mode: int = 0o666) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def atomic_write(path: str | os.PathLike, data: bytes | str, *, what: str | None = None) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder; returns the path.

    The file gets the user's umask (mkstemp's private 0600 would surprise anyone sharing reports). A failure (disk
    full, signal) removes the temporary file and leaves any previous ``path`` untouched.
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(exc, what or str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(exc, what or str(path)) from None
        raise
    return path


@contextlib.contextmanager
def file_lock(fh: IO) -> Iterator[None]:
    """An exclusive POSIX lock on an open file for the block (a no-op where flock does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: single appends are the best we can do
        yield
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def check_csv_target(path: str | os.PathLike, columns: Sequence[str], flag: str = "--csv") -> Path:
    """Refuse a CSV target that cannot take our rows, before a benchmark is spent on it.

    A folder, a missing parent folder, something that is not a regular file (a FIFO would block forever, a device
    would swallow the rows), an unwritable file, or a table with other columns.
    """
    text = os.fspath(path)
    if not str(text).strip():
        raise BadArgument(f"{flag} is empty; pass a file name, e.g. {flag} bench.csv")
    file = Path(text)
    try:
        if file.is_dir():
            raise BadArgument(f"{flag} {str(file)!r} is a folder; pass a file name, e.g. {flag} bench.csv")
        folder = file.parent if str(file.parent) else Path(".")
        if not folder.is_dir():
            raise BadArgument(f"{flag} {str(file)!r}: folder {str(folder)!r} does not exist; create it or pass another file")
        if file.exists() and not stat.S_ISREG(file.stat().st_mode):
            raise BadArgument(f"{flag} {str(file)!r} is not a regular file (a device or FIFO); pass a file name")
    except OSError as exc:
        raise BadArgument(f"{flag} {str(file)!r} cannot be used: {_reason(exc)}") from None
    if not os.access(file if file.exists() else folder, os.W_OK):
        raise BadArgument(f"{flag} {str(file)!r} is not writable; pass another file")
    try:
        with open(file, newline="", encoding="utf-8") as fh:
            first_line = fh.readline(1 << 16)
    except FileNotFoundError:
        return file
    except (OSError, UnicodeDecodeError) as exc:
        raise BadArgument(f"{flag} {str(file)!r} cannot be read ({exc}); pass another file") from None
    if first_line and next(csv.reader([first_line]), []) != list(columns):
        raise BadArgument(f"{flag} {str(file)!r} already holds a table with other columns; append to a new file instead")
    return file


def append_csv_row(path: str | os.PathLike, columns: Sequence[str], row: Mapping[str, object],
                   flag: str = "--csv") -> Path:
    """Append ``row`` to ``path`` (header first when the file is new or empty); returns the path.

    The row is one ``write`` on a file opened for appending, under an exclusive lock, so concurrent writers (two
    benchmarks, the workers of a sweep) never interleave lines.
    """
    file = check_csv_target(path, columns, flag)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    try:
        with open(file, "a+", newline="", encoding="utf-8") as fh, file_lock(fh):
            fh.seek(0)
            first_line = fh.readline(1 << 16)
            if not first_line:
                writer.writeheader()
            elif next(csv.reader([first_line]), []) != list(columns):
                raise BadArgument(
                    f"{flag} {str(file)!r} already holds a table with other columns; append to a new file instead"
                )
            writer.writerow(row)
            fh.seek(0, os.SEEK_END)
            fh.write(buffer.getvalue())
            fh.flush()
    except OSError as exc:
        raise write_error(exc, f"a row to {str(file)!r}") from None
    return file


def read_csv_rows(path: str | os.PathLike, columns: Sequence[str] | None = None) -> list[dict[str, str]]:
    """The rows of a CSV this module wrote (empty when the file does not exist)."""
    file = Path(path)
    if not file.exists():
        return []
    try:
        with open(file, newline="", encoding="utf-8") as fh, file_lock(fh):
            reader = csv.DictReader(fh)
            if columns is not None and reader.fieldnames is not None and list(reader.fieldnames) != list(columns):
                raise BadArgument(f"{str(file)!r} holds a table with other columns; pass another file")
            return [dict(r) for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadArgument(f"cannot read {str(file)!r} ({exc}); pass another file") from None
