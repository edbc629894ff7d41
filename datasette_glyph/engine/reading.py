"""Large CSV files read, parsed and checked by a second process, on the machine's other core.

Parsing and typing a file holds Python's GIL, and so does most of the writing: on one core the import spends a
third of its time on each. A thread does not help (a million rows took 29.8 s with a reading thread against
22.5 s without: the writer gives the GIL up at every statement and waits to get it back). A process does: the
child (``CHILD``: ``main(PATH, MAX_ERRORS)`` in a new Python process) opens the file by its path, reads it with
the same ``CsvSource`` and checks each chunk with the same ``RecordChecks`` as the importer would, and sends the typed
columns of each valid chunk down its stdout, pickled; the parent only unpickles them and writes. The pipe holds
about PIPE_BYTES, a few chunks, so neither process holds more, whatever the file's size. When a check fails the
child stops sending rows and goes on checking, to report as many errors as the importer would; it ends with the
errors, the error that stopped reading (if any), the file's SHA-256 and size, and the identity of the file it
read.

The parent reads the file too, by its own descriptor and in large blocks: that is what it hashes, what the
progress callback counts and what a kept original (``files.Original``) gets, as in the one-process path. The
child's SHA-256 and file identity must match the parent's, or the import is refused as a file changed meanwhile.
If the child stops without its last message, the import is refused whole (``StorageError`` ``reading``).

Used by ``importer.import_csv`` for files of at least ``PARALLEL_MIN_BYTES`` that it can name by a path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import pickle
import subprocess
import sys
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

if TYPE_CHECKING:
    from .batch import ImportWriter
from .csv_source import READ_BUFFER_BYTES, CsvSource, HashingReader, Unreadable, csv_chunks, set_field_limit
from .sqlite import StorageError
from .validate import RecordChecks

# A file this large or larger (about 170,000 rows) is read by a second process: a round figure, well past the point
# where the process's start pays for itself (docs/benchmarks.md, "Tuned constants")
PARALLEL_MIN_BYTES = 32 * 1024 * 1024
# The parent's reads of the file, for its hash and the kept original
COPY_BLOCK_BYTES = 1024 * 1024
# The pipe from the child, and the parent's buffer on it: room for several chunks (about 100 KB each pickled), so
# that neither process waits for the other at every chunk.
PIPE_BYTES = 1024 * 1024
# How long a child that has sent its last message gets to exit before it is stopped
CLOSE_WAIT_SECONDS = 10
# The child's program: the engine's modules without the package's __init__, which imports Datasette and the plugin
# (five times slower to start (docs/benchmarks.md, "Tuned constants")); then main(PATH, MAX_ERRORS).
CHILD = """
import sys, types
for name, path in (("datasette_glyph", sys.argv[1]), ("datasette_glyph.engine", sys.argv[1] + "/engine")):
    package = types.ModuleType(name)
    package.__path__ = [path]
    sys.modules[name] = package
from datasette_glyph.engine.reading import main
sys.exit(main(sys.argv[2:]))
"""


def file_identity(fd: int) -> Tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


class Reader:
    """A child process reading the CSV file at ``path``; ``feed(batch)`` writes what it sends.

    ``fd`` is the parent's own descriptor of the same file (its identity is checked against the child's).
    Close it with ``close()``, which stops the child if it is still running.
    """

    def __init__(
        self,
        path: str,
        fd: int,
        max_errors: int,
        progress: Optional[Callable[[int], None]] = None,
        copy: Optional[Callable[[bytes], None]] = None,
    ):
        self.fd = fd
        self.identity = file_identity(fd)
        self.progress = progress
        self.copy = copy
        self.sha256 = hashlib.sha256()
        self.copied = 0
        self.read = (0, 1)  # (records, bytes of the file) the child has read so far
        self.fatal: Optional[dict] = None
        self.end: Optional[dict] = None
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                path,
                str(max_errors),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            bufsize=PIPE_BYTES,
        )
        with contextlib.suppress(OSError, AttributeError):  # Linux only; elsewhere the pipe keeps its size
            fcntl.fcntl(self.process.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)

    def _copy_to(self, position: int) -> None:
        """Read the file from where the parent's copy stopped up to ``position`` (or its end: None)."""
        while position is None or self.copied < position:
            want = COPY_BLOCK_BYTES if position is None else min(COPY_BLOCK_BYTES, position - self.copied)
            block = os.pread(self.fd, want, self.copied)
            if not block:
                return
            self.sha256.update(block)
            self.copied += len(block)
            if self.copy is not None:
                self.copy(block)
            if self.progress is not None:
                self.progress(self.copied)

    def feed(self, writer: ImportWriter) -> None:
        """Write every chunk the child sends with ``writer``, then add the errors the child found to its checks."""
        stream = self.process.stdout
        while True:
            try:
                message = pickle.load(stream)
            except (EOFError, pickle.UnpicklingError, OSError) as e:
                status = self.process.wait()
                raise StorageError("reading", "the import", f"{type(e).__name__}; exit status {status}") from None
            if message[0] == "rows":
                _, typed, records, position = message
                self.read = (records, max(1, position))
                self._copy_to(position)
                writer.write(typed)
            elif message[0] == "end":
                self.end = message[1]
                break
        writer.checks.take(self.end["errors"], self.end["more"])
        self.fatal = self.end["fatal"]

    def digest(self) -> Tuple[str, int]:
        """The file's SHA-256 and size as the parent read them, once the child agrees it read the same file."""
        self._copy_to(None)
        sha256 = self.sha256.hexdigest()
        end = self.end or {}
        if end.get("identity") != self.identity or end.get("sha256") != sha256 or end.get("bytes") != self.copied:
            raise StorageError("changed", "the import")
        return sha256, self.copied

    def close(self) -> None:
        """Wait for a child that sent its last message to exit; stop one that did not (the import failed)."""
        if self.end is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=CLOSE_WAIT_SECONDS)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()


def _send(out, message) -> None:
    pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
    out.flush()


def main(argv: List[str]) -> int:
    """The child: read the file at PATH and send what ``Reader.feed`` expects. Exits 0 when it sent its last
    message, 1 when the file cannot be read as CSV from its first line (the parent, which reads the same first
    line itself, refuses such a file without waiting for this process), 2 when the parent has gone."""
    path, max_errors = argv[0], int(argv[1])
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the pipe
    set_field_limit()
    try:
        _read(path, max_errors, out)
    except Unreadable:
        return 1
    except BrokenPipeError:
        return 2
    return 0


def _read(path: str, max_errors: int, out) -> None:
    with open(path, "rb", buffering=0) as raw:
        hashing = HashingReader(raw)
        stream = io.BufferedReader(hashing, READ_BUFFER_BYTES)
        source = CsvSource(stream)
        checks = RecordChecks(source.header(), max_errors, None)
        records, fatal = 0, None
        for rows, first_line, fatal in csv_chunks(source):  # noqa: B007 (the last chunk's error is sent at the end)
            records += len(rows)
            typed = checks.prepare(rows, first_line)
            if typed is not None:
                _send(out, ("rows", typed, records, stream.tell()))
        stream.read()  # anything after the last record (normally nothing) belongs to the file too
        _send(
            out,
            (
                "end",
                {
                    "errors": checks.errors,
                    "more": checks.more,
                    "fatal": fatal.error if fatal is not None else None,
                    "sha256": hashing.sha256.hexdigest(),
                    "bytes": hashing.count,
                    "identity": file_identity(raw.fileno()),
                },
            ),
        )
