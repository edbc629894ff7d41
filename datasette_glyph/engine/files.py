"""Kept originals: the exact bytes each import read, compressed, named by their SHA-256, beside the database.

Every import writes what it reads (the CSV file as uploaded or given on the command line, a JSON body as received)
through a gzip compressor into a temp file in the store (``files_dir``; by default ``<database>-files``) as it
reads it, so the bytes are read once. Before the batch commits, the temp file is fsynced, renamed to
``<sha256>.gz`` and the folder fsynced, and an ``import_files`` row naming it is written in the batch's
transaction: a committed batch always has its file. The same bytes imported twice are one file named by two rows.

A crash leaves, at worst, a temp file or a ``<sha256>.gz`` that no committed row names. ``sweep`` (run when the
server starts and by ``glyph-files``) removes those, holding the database's write lock so that no import is between
renaming its file and committing, and only when they are older than ``SWEEP_GRACE_SECONDS``, so that an import
still reading its file in another process keeps it.

The store folder is made private (0700) as the upload folder is, its files 0600. Synchronous functions over a
``sqlite3.Connection``; nothing here imports Datasette.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import gzip
import hashlib
import json
import os
import queue
import re
import sqlite3
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Dict, Iterator, List, Optional, Union

from . import importer
from .folders import made_private
from .json_source import scan_json
from .sqlite import StorageError, transaction

SUFFIX = ".gz"
TEMP_PREFIX = ".keeping-"
NAME_RE = re.compile(r"^([0-9a-f]{64})\.gz$")
CSV_TYPE = "text/csv"
JSON_TYPE = "application/json"
# zlib level 1, on a thread of its own: level 6 would cost a quarter of an import's time for 30% less space
# (docs/benchmarks.md, "Kept original files")
COMPRESS_LEVEL = 1
# Chunks waiting for the compressor thread (about 1 MiB each): the reader waits when it is this far ahead, so a
# slow disk costs the server at most this much memory.
QUEUE_CHUNKS = 4
READ_CHUNK_BYTES = 1024 * 1024
# Files no committed batch names are removed only when older than this: an import in another process may still
# be writing its temp file (it takes the write lock only after reading the header).
SWEEP_GRACE_SECONDS = 3600

IMPORT_FILES_TABLE = "import_files"


class KeptFileError(StorageError):
    """The original could not be written to the kept files folder (a full disk, no permission): the import is
    refused, since a committed batch must have its file. A StorageError, so every door answers it as one."""

    def __init__(self, directory: Path, error: OSError):
        room = error.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC))
        sqlite3.OperationalError.__init__(
            self,
            f"The original file could not be kept in {directory} ({error.strerror or error}); the import was not "
            "saved (nothing was written). Make room there, or set keep_files: false (--no-keep-file).",
        )
        self.kind = "full" if room else "io"
        self.status = 507 if room else 503
        self.detail = str(error)


class FileStoreError(Exception):
    """A kept file cannot be found or read; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 404):
        super().__init__(message)
        self.message = message
        self.status = status


def default_files_dir(db_path: Union[str, os.PathLike]) -> Path:
    """The store beside a database file: ``glyph.db`` keeps its originals in ``glyph.db-files``."""
    return Path(os.fspath(db_path) + "-files")


def files_dir(db_path: Union[str, os.PathLike], configured: Optional[str] = None) -> Path:
    """The store folder (the configured one, else beside the database), created private (0700)."""
    path = Path(configured) if configured else default_files_dir(db_path)
    made_private(path, what="kept files folder", setting="files_dir")
    return path


def stored_path(directory: Path, sha256: str) -> Path:
    """Where the original with this SHA-256 is kept."""
    return Path(directory) / f"{sha256}{SUFFIX}"


def has_store(conn: sqlite3.Connection) -> bool:
    """True when the database has the ``import_files`` table (migration 0007 applied)."""
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [IMPORT_FILES_TABLE]).fetchone()
        is not None
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


INSERT_FILE_SQL = """
INSERT INTO import_files (import_id, sha256, bytes, stored_bytes, media_type, reimport_of)
VALUES (:import_id, :sha256, :bytes, :stored_bytes, :media_type, :reimport_of)
"""


class Original:
    """The original bytes of one import on their way into the store.

    The importer hands every chunk it reads to ``write`` (a compressor thread gzips them into a temp file) and,
    inside the batch's transaction just before it commits, calls ``keep``: the file is made durable under its
    SHA-256 name and the ``import_files`` row written. ``discard`` removes a temp file that was never kept.
    """

    def __init__(self, directory: Path, media_type: str, *, source_path=None, existing: Optional[dict] = None):
        self.directory = Path(directory)
        self.media_type = media_type
        self.source_path = source_path  # compress this file at keep() time (no chunks are written)
        self.existing = existing  # {sha256, bytes, stored_bytes, reimport_of}: the file is already in the store
        self.temp: Optional[Path] = None
        self._queue: Optional[queue.Queue] = None
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._stored = 0

    @classmethod
    def already_kept(cls, directory: Path, row: dict, reimport_of: str) -> "Original":
        """The original of a re-import: the kept file it is read from is its file too."""
        existing = {"sha256": row["sha256"], "bytes": row["bytes"], "stored_bytes": row["stored_bytes"]}
        existing["reimport_of"] = reimport_of
        return cls(directory, row["media_type"], existing=existing)

    # Writing ---------------------------------------------------------------------------------------------

    def _start(self) -> None:
        self.temp = self.directory / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._queue = queue.Queue(QUEUE_CHUNKS)
        self._thread = threading.Thread(target=self._compress, name="glyph-keep-file", daemon=True)
        self._thread.start()

    def _compress(self) -> None:
        compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 31)  # 31: gzip framing, readable by zcat
        ended = False
        try:
            while True:
                chunk = self._queue.get()
                if chunk is None:
                    ended = True
                    break
                if self._error is None:
                    out = compressor.compress(chunk)
                    self._file.write(out)
                    self._stored += len(out)
            if self._error is None:
                out = compressor.flush()
                self._file.write(out)
                self._stored += len(out)
                self._file.flush()
                os.fsync(self._file.fileno())
        except BaseException as e:  # a full disk: reported by keep(), which the import then fails with
            self._error = e
            while not ended and self._queue.get() is not None:  # the reader must never block on a full queue
                pass
        finally:
            try:
                self._file.close()
            except OSError as e:
                self._error = self._error or e

    def write(self, data) -> None:
        """One more chunk of the original, in order (a bytes-like object; it is copied)."""
        if self.existing is None and self.source_path is None:
            self._put(data)

    def _put(self, data) -> None:
        # Never raises: the importer's read must not fail for the store's sake; keep() reports the error.
        if self._error is not None:
            return
        if self._queue is None:
            try:
                self._start()
            except OSError as e:
                self._error = e
                return
        self._queue.put(bytes(data))

    def _finish_writing(self) -> None:
        try:
            if self._queue is None and self._error is None:
                self._start()  # an empty original: nothing was read
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join()
            if self._error is not None:
                raise self._error
        except OSError as e:
            raise KeptFileError(self.directory, e) from None

    def _compress_path(self) -> tuple:
        sha256 = hashlib.sha256()
        size = 0
        with open(self.source_path, "rb") as f:
            for chunk in iter(lambda: f.read(READ_CHUNK_BYTES), b""):
                sha256.update(chunk)
                size += len(chunk)
                self._put(chunk)
        return sha256.hexdigest(), size

    # Keeping ---------------------------------------------------------------------------------------------

    def keep(self, conn: sqlite3.Connection, import_id: str, sha256: str, size: int) -> None:
        """Make the file durable under its SHA-256 name and record it for ``import_id``, in the open transaction.

        ``sha256`` and ``size`` are the importer's, of the bytes it read and handed to ``write``; an original
        given as a file (``source_path``: a JSON body imported from a list) is hashed here as it is compressed,
        and must be those bytes (StorageError ``changed`` otherwise).
        """
        if self.existing is not None:
            row = dict(self.existing, import_id=import_id, media_type=self.media_type)
            conn.execute(INSERT_FILE_SQL, row)
            return
        if self.source_path is not None:
            try:
                kept = self._compress_path()
            except OSError as e:
                raise KeptFileError(self.directory, e) from None
            if kept != (sha256, size):  # the batch records the body it read; the file kept must be that body
                raise StorageError("changed", "the import")
        self._finish_writing()
        target = stored_path(self.directory, sha256)
        try:
            os.replace(self.temp, target)  # the same bytes kept before: one file, replaced by an identical one
            self.temp = None
            _fsync_dir(self.directory)
        except OSError as e:
            raise KeptFileError(self.directory, e) from None
        conn.execute(
            INSERT_FILE_SQL,
            {
                "import_id": import_id,
                "sha256": sha256,
                "bytes": size,
                "stored_bytes": self._stored,
                "media_type": self.media_type,
                "reimport_of": None,
            },
        )

    def discard(self) -> None:
        """Stop writing and remove the temp file, unless ``keep`` renamed it into place."""
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            self._error = self._error or RuntimeError("discarded")
            self._queue.put(None)
            self._thread.join()
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)
            self.temp = None


# Reading ---------------------------------------------------------------------------------------------------


FILE_ROW_SQL = """
SELECT f.import_id, f.sha256, f.bytes, f.stored_bytes, f.media_type, f.keep, f.reimport_of, f.removed_at,
       b.filename, b.source, b.description, b.status
FROM import_files AS f JOIN import_batches AS b ON b.import_id = f.import_id
WHERE f.import_id = ?
"""


def file_row(conn: sqlite3.Connection, import_id: str) -> Optional[dict]:
    """The ``import_files`` record of a batch with the batch's name, source and status, or None."""
    if not has_store(conn):
        return None
    cursor = conn.execute(FILE_ROW_SQL, [import_id])
    row = cursor.fetchone()
    return dict(zip([d[0] for d in cursor.description], row)) if row else None


def kept_files(conn: sqlite3.Connection, import_ids: List[str]) -> Dict[str, dict]:
    """``{import_id: {"file_kept", "file_bytes", "file_stored_bytes", "reimport_of"}}`` for the given batches."""
    found = {
        i: {"file_kept": False, "file_bytes": None, "file_stored_bytes": None, "reimport_of": None} for i in import_ids
    }
    if not import_ids or not has_store(conn):
        return found
    for import_id, size, stored, removed_at, reimport_of in conn.execute(
        "SELECT import_id, bytes, stored_bytes, removed_at, reimport_of FROM import_files "
        "WHERE import_id IN (SELECT value FROM json_each(?))",
        [json.dumps(import_ids)],
    ):
        kept = removed_at is None
        found[import_id] = {
            "file_kept": kept,
            "file_bytes": size if kept else None,
            "file_stored_bytes": stored if kept else None,
            "reimport_of": reimport_of,
        }
    return found


def with_kept_files(conn: sqlite3.Connection, batches: List[dict]) -> List[dict]:
    """The batch records with ``kept_files``' fields added: what ``GET /api/imports`` and ``glyph-imports --json``
    give for each import."""
    kept = kept_files(conn, [b["import_id"] for b in batches])
    return [{**b, **kept[b["import_id"]]} for b in batches]


def download_name(row: dict) -> str:
    """The file name a download is offered under: the batch's file name, else ``<import_id>.csv`` / ``.json``."""
    name = (row.get("filename") or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable() and c not in '"')
    if not name:
        name = row["import_id"] + (".json" if row["media_type"] == JSON_TYPE else ".csv")
    return name


def open_kept(directory: Path, row: Optional[dict], import_id: str) -> BinaryIO:
    """The kept original of a batch, decompressing as it is read; FileStoreError when there is none."""
    if row is None:
        raise FileStoreError(f"The original file of import {import_id} was not kept")
    if row["removed_at"] is not None:
        raise FileStoreError(f"The original file of import {import_id} was removed (pruned) at {row['removed_at']}")
    path = stored_path(directory, row["sha256"])
    try:
        return gzip.open(path, "rb")
    except FileNotFoundError:
        raise FileStoreError(
            f"The original file of import {import_id} is missing from {directory}; "
            "datasette glyph-files --verify reports every missing or damaged file",
            status=404,
        ) from None


# Re-import -------------------------------------------------------------------------------------------------


class NotReimportable(Exception):
    """The batch is unknown, or its original was not kept; ``status`` is 404."""

    status = 404


def reimport(conn: sqlite3.Connection, directory: Path, import_id: str, *, actor: Optional[str] = None, **options):
    """Import a batch's kept original again, as a new batch whose ``reimport_of`` names the original batch.

    The new batch keeps the original's file name, source and description; its ``same_content_as`` is the
    newest complete batch of the same bytes, as for any import. Works for a rolled-back batch too: that is how
    one is brought back. Raises NotReimportable, StorageError (kind ``changed``) when the kept file no longer has
    its SHA-256, or the importer's ImportFailed.
    """

    row = file_row(conn, import_id)
    if row is None:
        if conn.execute("SELECT 1 FROM import_batches WHERE import_id = ?", [import_id]).fetchone() is None:
            raise NotReimportable(f"No import with import_id {import_id!r}")
        raise NotReimportable(f"The original file of import {import_id} was not kept, so it cannot be re-imported")
    try:
        stream = open_kept(directory, row, import_id)
    except FileStoreError as e:
        raise NotReimportable(e.message) from None
    options.update(
        filename=row["filename"],
        source_name=row["source"],
        description=row["description"],
        actor=actor,
        expected_sha256=row["sha256"],
        original=Original.already_kept(directory, row, reimport_of=import_id),
    )
    try:
        with stream:
            if row["media_type"] != JSON_TYPE:
                return importer.import_csv(conn, stream, **options)
            return _reimport_json(importer, conn, stream, directory, options)
    except (importer.ImportFailed, importer.InvalidJson, OSError, EOFError, zlib.error):
        # A damaged file may fail to parse or decompress before its SHA-256 is known: say which it was.
        if not _intact(stored_path(directory, row["sha256"]), row["sha256"]):
            raise StorageError("changed", "the re-import") from None
        raise


def _reimport_json(importer, conn, stream, directory: Path, options: dict):
    # A JSON body is read twice (scanned for its keys, then imported): decompressed to a private temp file.
    temp = Path(directory) / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
    try:
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            for chunk in iter(lambda: stream.read(READ_CHUNK_BYTES), b""):
                out.write(chunk)
        return importer.import_json(conn, scan_json(temp), **options)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _intact(path: Path, sha256: str) -> bool:
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(READ_CHUNK_BYTES), b""):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error):
        return False
    return digest.hexdigest() == sha256


# Sweep, verify, prune --------------------------------------------------------------------------------------


LIVE_SHAS_SQL = "SELECT DISTINCT sha256 FROM import_files WHERE removed_at IS NULL"


def _old(path: Path, grace_seconds: float, now: float) -> bool:
    try:
        return now - os.lstat(path).st_mtime >= grace_seconds
    except FileNotFoundError:
        return False


def sweep(conn: sqlite3.Connection, directory: Path, grace_seconds: float = SWEEP_GRACE_SECONDS) -> List[str]:
    """Remove files that no committed batch names (temp files of imports that never finished included), when
    older than ``grace_seconds``; return their names. Runs holding the database's write lock."""
    directory = Path(directory)
    if not has_store(conn) or not directory.is_dir():
        return []
    removed = []
    with transaction(conn, "glyph_sweep", "the sweep of kept files"):
        live = {row[0] for row in conn.execute(LIVE_SHAS_SQL)}
        now = time.time()
        for entry in sorted(os.listdir(directory)):
            path = directory / entry
            match = NAME_RE.match(entry)
            orphan = entry.startswith(TEMP_PREFIX) or (match is not None and match.group(1) not in live)
            if orphan and _old(path, grace_seconds, now):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                removed.append(entry)
    return removed


@dataclass
class Problem:
    """A kept file that is missing or whose bytes no longer have their SHA-256."""

    sha256: str
    kind: str  # missing, damaged
    import_ids: List[str]
    detail: str = ""


def verify(conn: sqlite3.Connection, directory: Path) -> tuple:
    """Recompute every kept file's SHA-256 (decompressing it) against the batches naming it.

    Returns (files checked, list of Problem).
    """
    directory = Path(directory)
    batches: Dict[str, List[str]] = {}
    sizes: Dict[str, int] = {}
    for import_id, sha256, size in conn.execute(
        "SELECT import_id, sha256, bytes FROM import_files WHERE removed_at IS NULL ORDER BY rowid"
    ):
        batches.setdefault(sha256, []).append(import_id)
        sizes[sha256] = size
    problems = []
    for sha256, import_ids in batches.items():
        path = stored_path(directory, sha256)
        if not path.exists():
            problems.append(Problem(sha256, "missing", import_ids, f"{path} does not exist"))
            continue
        digest, size = hashlib.sha256(), 0
        try:
            with gzip.open(path, "rb") as f:
                for chunk in iter(lambda: f.read(READ_CHUNK_BYTES), b""):
                    digest.update(chunk)
                    size += len(chunk)
        except (OSError, EOFError, zlib.error) as e:
            problems.append(Problem(sha256, "damaged", import_ids, f"{path} cannot be decompressed: {e}"))
            continue
        if digest.hexdigest() != sha256 or size != sizes[sha256]:
            problems.append(
                Problem(sha256, "damaged", import_ids, f"{path} holds {size:,} bytes with SHA-256 {digest.hexdigest()}")
            )
    return len(batches), problems


@dataclass
class PruneResult:
    removed_files: List[str] = field(default_factory=list)  # SHA-256 of each file removed
    batches: List[str] = field(default_factory=list)  # import_ids whose file is no longer kept
    bytes_freed: int = 0


PRUNE_CANDIDATES_SQL = """
SELECT f.import_id, f.sha256, f.stored_bytes, f.keep, b.source, b.imported_at,
       ROW_NUMBER() OVER (PARTITION BY b.source ORDER BY b.imported_at DESC, b.id DESC) AS newest
FROM import_files AS f JOIN import_batches AS b ON b.import_id = f.import_id
WHERE f.removed_at IS NULL
"""


def prune(
    conn: sqlite3.Connection,
    directory: Path,
    *,
    older_than: Optional[datetime.timedelta] = None,
    keep_last: Optional[int] = None,
    now: Optional[datetime.datetime] = None,
) -> PruneResult:
    """Remove kept files by age and count, never one that a batch marked ``keep`` names.

    A batch's file may go when the batch was imported more than ``older_than`` ago (if given) and is not one of
    the newest ``keep_last`` batches with a kept file of its source (if given). A file goes when every batch
    naming it may let it go; its batches then record ``removed_at``. The rows change first, in one transaction;
    the files are removed afterwards, under the write lock, if still no batch names them.
    """
    if older_than is None and keep_last is None:
        raise ValueError("give older_than, keep_last or both")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    cutoff = (now - older_than).strftime("%Y-%m-%d %H:%M:%S.%f") if older_than is not None else None
    directory = Path(directory)
    result = PruneResult()
    with transaction(conn, "glyph_prune", "the prune of kept files"):
        by_sha: Dict[str, list] = {}
        for import_id, sha256, stored, keep, _source, imported_at, newest in conn.execute(PRUNE_CANDIDATES_SQL):
            may_go = not keep
            if cutoff is not None:
                may_go = may_go and imported_at < cutoff
            if keep_last is not None:
                may_go = may_go and newest > keep_last
            by_sha.setdefault(sha256, []).append((import_id, may_go, stored))
        removed_at = now.strftime("%Y-%m-%d %H:%M:%S.%f")
        for sha256, rows in by_sha.items():
            if all(may_go for _, may_go, _ in rows):
                ids = [import_id for import_id, _, _ in rows]
                conn.executemany(
                    "UPDATE import_files SET removed_at = ? WHERE import_id = ?", [(removed_at, i) for i in ids]
                )
                result.removed_files.append(sha256)
                result.batches.extend(ids)
                result.bytes_freed += rows[0][2]
    if result.removed_files:
        with transaction(conn, "glyph_prune", "the prune of kept files"):
            live = {row[0] for row in conn.execute(LIVE_SHAS_SQL)}
            for sha256 in result.removed_files:
                if sha256 not in live:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(stored_path(directory, sha256))
    return result


def set_keep(conn: sqlite3.Connection, import_id: str, keep: bool) -> bool:
    """Mark a batch's file as one prune must never remove (or release the mark); False if it has no file row."""
    with transaction(conn, "glyph_keep", "the keep mark"):
        cursor = conn.execute("UPDATE import_files SET keep = ? WHERE import_id = ?", [int(keep), import_id])
    return cursor.rowcount == 1


def chunks(stream: BinaryIO, size: int = 64 * 1024) -> Iterator[bytes]:
    """A kept file's original bytes in pieces (for streaming a download)."""
    return iter(lambda: stream.read(size), b"")
