"""Kept originals: the exact bytes each import read, compressed, in a second SQLite database beside the store's.

``glyph.db`` keeps its originals in ``glyph.db-files.db`` (or the files database the store was pointed at once:
the store records it). That database holds ``kept_files`` (one row per distinct original, named by its SHA-256)
and ``kept_chunks`` (the original in pieces of ``CHUNK_BYTES``, each compressed on its own with zlib), so that a
backup of the two files (the same ``litestream.yml``) holds everything, and a file is read back piece by piece.

Every import writes what it reads (the CSV file as uploaded or given on the command line, a JSON body as
received) through a compressor thread into the files database as it reads it, so the bytes are read once; each
piece commits on its own (no lock held on the files database for the import's length). Before the batch commits,
the file's row is completed with its SHA-256 and made durable (``synchronous = FULL``), and the ``import_files``
row naming it is written in the batch's transaction: a committed batch always has its file. The same bytes
imported twice are one file named by two rows.

A files database belongs to one store: it records the store's ``store_id`` (``import_files_store``, migration
0010) and where that store's database is, and refuses any other store, so that no store can ever remove the
files of another. A crash leaves, at worst, a file row that no committed batch names; ``sweep`` (run when the
server starts and by ``glyph-files --prune``) removes those, holding the store's write lock so that no import is
between completing its file and committing, and only when they are older than ``SWEEP_GRACE_SECONDS``, so that
an import still reading its file in another process keeps it.

Synchronous functions over ``sqlite3.Connection``; nothing here imports Datasette.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import io
import json
import os
import queue
import re
import sqlite3
import stat
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Dict, Iterator, List, Optional, Union

from . import importer
from .json_source import scan_json
from .sqlite import StorageError, connect, open_read_only, transaction

CSV_TYPE = "text/csv"
JSON_TYPE = "application/json"
FILES_DB_SUFFIX = "-files.db"
# The folder of .gz files that stores kept their originals in before migration 0010.
OLD_FOLDER_SUFFIX = "-files"
OLD_NAME_RE = re.compile(r"^([0-9a-f]{64})\.gz$")
TEMP_PREFIX = ".keeping-"
# zlib level 1, on a thread of its own: level 6 would cost a quarter of an import's time for 30% less space
# (docs/benchmarks.md, "Kept original files")
COMPRESS_LEVEL = 1
# Each piece of an original is this many bytes (the last one fewer), compressed on its own: a download or a
# re-import holds one piece at a time.
CHUNK_BYTES = 1024 * 1024
# Pieces waiting for the compressor thread (about 1 MiB each): the reader waits when it is this far ahead, so a
# slow disk costs the server at most this much memory.
QUEUE_CHUNKS = 4
READ_CHUNK_BYTES = 1024 * 1024
# Files no committed batch names are removed only when older than this: an import in another process may still
# be writing its file (it takes the write lock only after reading the header).
SWEEP_GRACE_SECONDS = 3600

IMPORT_FILES_TABLE = "import_files"
STORE_TABLE = "import_files_store"

FILES_SCHEMA = """
CREATE TABLE IF NOT EXISTS kept_store (
    store_id TEXT NOT NULL, -- import_files_store.store_id of the one store whose originals these are
    store_path TEXT NOT NULL, -- where that store's database file is
    claimed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kept_files (
    id INTEGER PRIMARY KEY,
    sha256 TEXT UNIQUE, -- SHA-256 of the original bytes; NULL while an import is still writing them
    bytes INTEGER NOT NULL DEFAULT 0, -- size of the original
    stored_bytes INTEGER NOT NULL DEFAULT 0, -- size of its compressed pieces
    chunks INTEGER NOT NULL DEFAULT 0,
    written_at REAL NOT NULL -- Unix time of the last piece written: the sweep's hour of grace counts from here
);
CREATE TABLE IF NOT EXISTS kept_chunks (
    file_id INTEGER NOT NULL REFERENCES kept_files(id),
    seq INTEGER NOT NULL, -- 0, 1, 2...: the piece's place in the original
    data BLOB NOT NULL, -- CHUNK_BYTES of the original (the last piece fewer), zlib-compressed on its own
    PRIMARY KEY (file_id, seq)
);
"""


class KeptFileError(StorageError):
    """The original could not be written to the files database (a full disk, no permission): the import is
    refused, since a committed batch must have its file. A StorageError, so every door answers it as one."""

    def __init__(self, where: Path, error: BaseException):
        code = getattr(error, "sqlite_errorcode", None)
        room = getattr(error, "errno", None) in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC))
        room = room or (code is not None and code & 0xFF == 13)
        why = getattr(error, "strerror", None) or str(error)
        if not room and code is not None and code & 0xFF == 10 and _no_room(Path(where).parent):
            # SQLite says "disk I/O error" when its journal cannot grow on a full disk: say what it was
            room, why = True, os.strerror(errno.ENOSPC)
        sqlite3.OperationalError.__init__(
            self,
            f"The original file could not be kept in {where} ({why}); the import was not saved (nothing was "
            "written). Make room there, or set keep_files: false (--no-keep-file).",
        )
        self.kind = "full" if room else "io"
        self.status = 507 if room else 503
        self.detail = str(error)


def _no_room(folder: Path) -> bool:
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < 64 * 1024


class FileStoreError(Exception):
    """A kept file cannot be found, read or trusted; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 404):
        super().__init__(message)
        self.message = message
        self.status = status


class AnotherStore(FileStoreError):
    """The files database belongs to another store, or the store keeps its files elsewhere: nothing is read from
    it or written to it. A 503: the server's configuration needs changing."""

    def __init__(self, message: str):
        super().__init__(message, status=503)


def default_files_db(db_path: Union[str, os.PathLike]) -> Path:
    """The files database beside a store: ``glyph.db`` keeps its originals in ``glyph.db-files.db``."""
    return Path(os.fspath(db_path) + FILES_DB_SUFFIX)


def old_folder(db_path: Union[str, os.PathLike]) -> Path:
    """The folder of ``<sha256>.gz`` files a store kept its originals in before migration 0010."""
    return Path(os.fspath(db_path) + OLD_FOLDER_SUFFIX)


def has_store(conn: sqlite3.Connection) -> bool:
    """True when the database has the ``import_files`` table (migration 0007 applied)."""
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [IMPORT_FILES_TABLE]).fetchone()
        is not None
    )


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]).fetchone() is not None


def _same_file(a: Union[str, os.PathLike], b: Union[str, os.PathLike]) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


# Which files database a store uses ------------------------------------------------------------------------------


@dataclass
class FileStore:
    """A store's files database: where it is and the store it belongs to (checked when it was opened)."""

    path: Path
    store_id: str
    db_path: str
    pending_id: bool = False  # the store has no identity yet: record() gives it this one
    pending_path: Optional[str] = None  # the files database to record in the store (not the default)

    def check(self, claim: bool) -> None:
        """Check (and with ``claim``, create the tables of and claim) the files database; AnotherStore if it is
        another store's."""
        files_conn = connect(self.path) if claim else open_read_only(self.path, busy_timeout_ms=5000)
        try:
            if claim:
                files_conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect on a new file only
                files_conn.executescript(FILES_SCHEMA)
            elif not has_table(files_conn, "kept_store"):
                return
            _check_owner(files_conn, self.path, self, claim=claim)
        except sqlite3.DatabaseError as e:
            raise AnotherStore(f"The files database {self.path} cannot be read: {e}") from None
        finally:
            files_conn.close()

    def ensure(self) -> None:
        """Create the files database (private, 0600) and claim it for the store, unless it exists."""
        if self.path.exists() and not self.pending_id:
            return
        if not self.path.parent.is_dir():  # the folder vanished: the import is refused as unable to keep its file
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(self.path.parent))
        _create_private(self.path)
        self.check(claim=True)

    def record(self, conn: sqlite3.Connection) -> None:
        """Write the store's identity and its files database into the store, in the caller's transaction (the
        batch's), if not there yet."""
        if self.pending_id:
            _write_store(conn, f"INSERT INTO {STORE_TABLE} (store_id) VALUES (?)", [self.store_id])
            self.pending_id = False
        if self.pending_path:
            _write_store(conn, f"UPDATE {STORE_TABLE} SET files_db = ?", [self.pending_path])
            self.pending_path = None

    def connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def read(self) -> sqlite3.Connection:
        return open_read_only(self.path, busy_timeout_ms=5000)

    def __str__(self) -> str:
        return str(self.path)


def store_record(conn: sqlite3.Connection) -> Optional[tuple]:
    """``(store_id, files_db)`` of the store (``files_db`` None: beside the database; ``store_id`` None: no file
    kept yet), or None before migration 0010."""
    if not has_table(conn, STORE_TABLE):
        return None
    return conn.execute(f"SELECT store_id, files_db FROM {STORE_TABLE}").fetchone() or (None, None)


def _write_store(conn: sqlite3.Connection, sql: str, params: list) -> None:
    if conn.in_transaction:  # an import's own transaction (not a savepoint: the import's must be the first)
        conn.execute(sql, params)
    else:
        with transaction(conn, "glyph_files_db", "recording the files database"):
            conn.execute(sql, params)


def files_db_path(conn: sqlite3.Connection, db_path, configured: Optional[str] = None) -> Path:
    """Where the store keeps its originals: the files database it recorded, else ``configured``, else beside it.

    Raises AnotherStore when ``configured`` names another file than the one the store recorded."""
    record = store_record(conn)
    recorded = record[1] if record else None
    if configured and recorded and not _same_file(configured, recorded):
        raise AnotherStore(
            f"{db_path} keeps its original files in {recorded}, not {configured}; leave the files database "
            "setting out (the store remembers it), or give that one"
        )
    if recorded:
        return Path(recorded)
    beside = default_files_db(db_path)
    if configured and beside.exists() and not _same_file(configured, beside):
        raise AnotherStore(
            f"{db_path} keeps its original files in {beside}, not {configured}; leave the files database setting "
            "out (the store finds its own)"
        )
    return Path(os.path.abspath(configured)) if configured else beside


def _create_private(path: Path) -> None:
    """Create an empty files database file readable by this user alone (0600); refuse a symbolic link."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    if stat.S_ISLNK(info.st_mode):
        raise AnotherStore(f"The files database {path} is a symbolic link; refusing to keep originals through it")


def open_store(conn: sqlite3.Connection, db_path, configured: Optional[str] = None, *, create: bool = True):
    """The store's files database, checked to belong to it when it exists.

    With ``create``, a files database that does not exist yet is made (and claimed) by the first import that
    writes to it (``FileStore.ensure``), and the store's identity, and a ``configured`` files database other than
    the default, are written into the store with that import's batch (``FileStore.record``): a refused import
    changes nothing in the store. Later commands and servers then find the files database without being told.
    Returns None when the store has no ``import_files_store`` (before migration 0010) or, with ``create`` False,
    no kept file yet. Raises AnotherStore when the files database belongs to another store.
    """
    record = store_record(conn)
    if record is None:
        return None
    store_id = record[0]
    path = files_db_path(conn, db_path, configured)
    if not create and (store_id is None or not path.exists()):
        return None
    store = FileStore(path, store_id, os.path.abspath(db_path))
    if store_id is None:  # no file kept yet: the identity is given with the first batch that keeps one
        store.store_id = str(uuid.uuid4())
        store.pending_id = True
    if create and configured and record[1] is None and not _same_file(path, default_files_db(db_path)):
        store.pending_path = str(path)
    if path.is_symlink():
        raise AnotherStore(f"The files database {path} is a symbolic link; refusing to keep originals through it")
    if path.exists():
        store.check(claim=create)
    return store


def _check_owner(files_conn, path: Path, store: "FileStore", *, claim: bool) -> None:
    me, db_path = store.db_path, store.db_path
    with transaction(files_conn, "glyph_claim", "claiming the files database") if claim else contextlib.nullcontext():
        owner = files_conn.execute("SELECT store_id, store_path FROM kept_store").fetchone()
        if owner is None:
            if claim:
                files_conn.execute(
                    "INSERT INTO kept_store (store_id, store_path, claimed_at) VALUES (?, ?, ?)",
                    [store.store_id, me, now_text()],
                )
            return
        if owner[0] != store.store_id and store.pending_id and _same_file(owner[1], me):
            # This store has kept no file yet, and the files database was claimed for it at its path (by an import
            # that was refused, or runs beside this one): it is this store's
            store.store_id = owner[0]
        if owner[0] != store.store_id:
            raise AnotherStore(
                f"The files database {path} holds the original files of another store ({owner[1]}); it never "
                f"serves or removes them for {db_path}. Give {db_path} a files database of its own"
            )
        if _same_file(owner[1], me):
            return
        beside = _same_file(path, default_files_db(db_path))
        if not beside and os.path.exists(owner[1]):
            # A copy of the store (a restored backup) pointed at the original's files database: the copy does not
            # name the original's newer imports, and would sweep their files.
            raise AnotherStore(
                f"The files database {path} belongs to the store at {owner[1]}, of which {db_path} is a copy; a "
                f"copy must keep its files in a files database of its own (restore {path} beside it as "
                f"{default_files_db(db_path)})"
            )
        if claim:  # the store was moved (or restored under a new name with its own files database): follow it
            files_conn.execute("UPDATE kept_store SET store_path = ?", [me])


def now_text() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


INSERT_FILE_SQL = """
INSERT INTO import_files (import_id, sha256, bytes, stored_bytes, media_type, reimport_of)
VALUES (:import_id, :sha256, :bytes, :stored_bytes, :media_type, :reimport_of)
"""


class Original:
    """The original bytes of one import on their way into the files database.

    The importer hands every chunk it reads to ``write`` (a compressor thread compresses them into the files
    database, piece by piece, under a row with no SHA-256 yet) and, inside the batch's transaction just before it
    commits, calls ``keep``: the row gets its SHA-256 (or, when those bytes are already kept, is dropped for the
    row that has them), durably, and the ``import_files`` row is written. ``discard`` removes a file never kept.
    """

    def __init__(self, store: FileStore, media_type: str, *, source_path=None, existing: Optional[dict] = None):
        self.store = store
        self.media_type = media_type
        self.source_path = source_path  # compress this file at keep() time (no chunks are written)
        self.existing = existing  # {sha256, bytes, stored_bytes, reimport_of}: the file is already in the store
        self._queue: Optional[queue.Queue] = None
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._conn: Optional[sqlite3.Connection] = None
        self._file_id: Optional[int] = None
        self._pending = bytearray()
        self._stored = 0
        self._chunks = 0

    @classmethod
    def already_kept(cls, store: FileStore, row: dict, reimport_of: str) -> "Original":
        """The original of a re-import: the kept file it is read from is its file too."""
        existing = {"sha256": row["sha256"], "bytes": row["bytes"], "stored_bytes": row["stored_bytes"]}
        existing["reimport_of"] = reimport_of
        return cls(store, row["media_type"], existing=existing)

    # Writing ---------------------------------------------------------------------------------------------

    def _start(self) -> None:
        self.store.ensure()
        self._conn = self.store.connect()
        self._conn.execute("PRAGMA synchronous = NORMAL")  # the last piece's commit is made durable by keep()
        cursor = self._conn.execute("INSERT INTO kept_files (sha256, written_at) VALUES (NULL, ?)", [time.time()])
        self._file_id = cursor.lastrowid
        self._queue = queue.Queue(QUEUE_CHUNKS)
        self._thread = threading.Thread(target=self._compress, name="glyph-keep-file", daemon=True)
        self._thread.start()

    def _store_piece(self, piece: bytes) -> None:
        data = zlib.compress(piece, COMPRESS_LEVEL)
        self._conn.execute(
            "INSERT INTO kept_chunks (file_id, seq, data) VALUES (?, ?, ?)", [self._file_id, self._chunks, data]
        )
        self._chunks += 1
        self._stored += len(data)
        self._conn.execute(
            "UPDATE kept_files SET stored_bytes = ?, chunks = ?, written_at = ? WHERE id = ?",
            [self._stored, self._chunks, time.time(), self._file_id],
        )

    def _compress(self) -> None:
        pending = bytearray()
        ended = False
        try:
            while True:
                chunk = self._queue.get()
                if chunk is None:
                    ended = True
                    break
                if self._error is None:
                    pending += chunk
                    while len(pending) >= CHUNK_BYTES:
                        self._store_piece(bytes(pending[:CHUNK_BYTES]))
                        del pending[:CHUNK_BYTES]
            if self._error is None and pending:
                self._store_piece(bytes(pending))
        except BaseException as e:  # a full disk: reported by keep(), which the import then fails with
            self._error = e
            while not ended and self._queue.get() is not None:  # the reader must never block on a full queue
                pass

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
            except (OSError, sqlite3.Error, AnotherStore) as e:
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
                self._thread = None
            if self._error is not None:
                raise self._error
        except AnotherStore:
            raise
        except (OSError, sqlite3.Error) as e:
            raise KeptFileError(self.store.path, e) from None

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
        """Make the file durable under its SHA-256 and record it for ``import_id``, in the open transaction.

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
                raise KeptFileError(self.store.path, e) from None
            if kept != (sha256, size):  # the batch records the body it read; the file kept must be that body
                raise StorageError("changed", "the import")
        self._finish_writing()
        try:
            self._conn.execute("PRAGMA synchronous = FULL")  # this commit syncs every piece written before it
            with transaction(self._conn, "glyph_keep", "keeping the original"):
                kept = self._conn.execute("SELECT id, stored_bytes FROM kept_files WHERE sha256 = ?", [sha256])
                kept = kept.fetchone()
                if kept is not None:  # the same bytes kept before: one file
                    delete_file_rows(self._conn, [self._file_id])
                    stored = kept[1]
                else:
                    self._conn.execute(
                        "UPDATE kept_files SET sha256 = ?, bytes = ?, written_at = ? WHERE id = ?",
                        [sha256, size, time.time(), self._file_id],
                    )
                    stored = self._stored
            self._file_id = None
        except sqlite3.Error as e:
            raise KeptFileError(self.store.path, e) from None
        finally:
            self._close()
        self.store.record(conn)
        conn.execute(
            INSERT_FILE_SQL,
            {
                "import_id": import_id,
                "sha256": sha256,
                "bytes": size,
                "stored_bytes": stored,
                "media_type": self.media_type,
                "reimport_of": None,
            },
        )

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def discard(self) -> None:
        """Stop writing and remove the file's pieces, unless ``keep`` kept them."""
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            self._error = self._error or RuntimeError("discarded")
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._conn is not None and self._file_id is not None:
            with contextlib.suppress(sqlite3.Error):
                with transaction(self._conn, "glyph_discard", "discarding the original"):
                    delete_file_rows(self._conn, [self._file_id])
            self._file_id = None
        self._close()


def delete_file_rows(files_conn: sqlite3.Connection, ids: List[int]) -> None:
    files_conn.executemany("DELETE FROM kept_chunks WHERE file_id = ?", [(i,) for i in ids])
    files_conn.executemany("DELETE FROM kept_files WHERE id = ?", [(i,) for i in ids])


# Reading ---------------------------------------------------------------------------------------------------


FILE_ROW_SQL = """
SELECT f.import_id, f.sha256, f.bytes, f.stored_bytes, f.media_type, f.keep, f.reimport_of, f.removed_at,
       {removal}, b.filename, b.source, b.description, b.status
FROM import_files AS f JOIN import_batches AS b ON b.import_id = f.import_id
WHERE f.import_id = ?
"""


def has_removal_columns(conn: sqlite3.Connection) -> bool:
    return any(row[1] == "removed_by" for row in conn.execute("PRAGMA table_info(import_files)"))


def file_row(conn: sqlite3.Connection, import_id: str) -> Optional[dict]:
    """The ``import_files`` record of a batch with the batch's name, source and status, or None."""
    if not has_store(conn):
        return None
    removal = "f.removed_by, f.removed_how" if has_removal_columns(conn) else "NULL AS removed_by, NULL AS removed_how"
    cursor = conn.execute(FILE_ROW_SQL.format(removal=removal), [import_id])
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


def not_kept_reason(row: Optional[dict], import_id: str) -> Optional[str]:
    """Why a batch has no kept original to read (never kept, pruned, deleted), or None when it has one."""
    if row is None:
        return f"The original file of import {import_id} was not kept"
    if row["removed_at"] is not None:
        if row.get("removed_how") == "deleted":
            by = f" by {row['removed_by']}" if row.get("removed_by") else ""
            return f"The original file of import {import_id} was deleted{by} at {row['removed_at']}"
        return f"The original file of import {import_id} was removed (pruned) at {row['removed_at']}"
    return None


def _missing(import_id: str, store: Optional[FileStore]) -> FileStoreError:
    where = f"the files database {store.path}" if store is not None else "the files database"
    return FileStoreError(
        f"The original file of import {import_id} is missing from {where}; datasette glyph-files --verify "
        "reports every missing or damaged file",
        status=404,
    )


class Damaged(Exception):
    """A kept file's pieces do not decompress, or do not give back its size and SHA-256."""


class KeptReader:
    """One kept original, read piece by piece from the files database in one read transaction (one snapshot),
    so that what ``verify`` checked is what ``pieces`` gives. ``close`` ends the transaction."""

    def __init__(self, files_conn: sqlite3.Connection, file_id: int, sha256: str, size: int):
        self.conn = files_conn
        self.file_id = file_id
        self.sha256 = sha256
        self.size = size

    def pieces(self) -> Iterator[bytes]:
        """The original's pieces, decompressed, in order; raises Damaged at the end if they are not the file."""
        digest, size = hashlib.sha256(), 0
        try:
            cursor = self.conn.execute("SELECT data FROM kept_chunks WHERE file_id = ? ORDER BY seq", [self.file_id])
            for (data,) in cursor:
                piece = zlib.decompress(data)
                digest.update(piece)
                size += len(piece)
                if size > self.size:
                    break
                yield piece
        except (zlib.error, sqlite3.DatabaseError) as e:
            raise Damaged(f"cannot be read: {e}") from None
        if size != self.size or digest.hexdigest() != self.sha256:
            raise Damaged(f"holds {size:,} bytes with SHA-256 {digest.hexdigest()}")

    def verify(self) -> None:
        """Read every piece once; raises Damaged unless they give back the file's size and SHA-256."""
        for _ in self.pieces():
            pass

    def stream(self) -> BinaryIO:
        """The original as a binary file object (for a re-import); a damaged file raises Damaged as it is read."""
        return io.BufferedReader(_PieceStream(self.pieces()), READ_CHUNK_BYTES)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self.conn.close()


class _PieceStream(io.RawIOBase):
    def __init__(self, pieces: Iterator[bytes]):
        self._pieces = pieces
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._pieces)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def open_kept(store: Optional[FileStore], row: Optional[dict], import_id: str) -> KeptReader:
    """A reader of a batch's kept original (not yet verified); FileStoreError when there is none."""
    reason = not_kept_reason(row, import_id)
    if reason:
        raise FileStoreError(reason)
    if store is None:
        raise _missing(import_id, None)
    try:
        files_conn = store.read()
    except sqlite3.Error:
        raise _missing(import_id, store) from None
    try:
        files_conn.execute("BEGIN")
        found = files_conn.execute("SELECT id FROM kept_files WHERE sha256 = ?", [row["sha256"]]).fetchone()
    except sqlite3.DatabaseError as e:
        files_conn.close()
        raise FileStoreError(
            f"The kept file of import {import_id} cannot be read ({e}); datasette glyph-files --verify reports "
            "every damaged file",
            status=503,
        ) from None
    if found is None:
        files_conn.close()
        raise _missing(import_id, store)
    return KeptReader(files_conn, found[0], row["sha256"], row["bytes"])


def open_verified(store: Optional[FileStore], row: Optional[dict], import_id: str) -> KeptReader:
    """``open_kept``, then every piece read and checked against the batch's size and SHA-256 before any is
    given out: a damaged file is a FileStoreError (503)."""
    reader = open_kept(store, row, import_id)
    try:
        reader.verify()
    except Damaged:
        reader.close()
        raise FileStoreError(damaged_message(import_id), status=503) from None
    return reader


def original_bytes(conn: sqlite3.Connection, store: Optional[FileStore], import_id: str) -> bytes:
    """A batch's kept original, whole and checked (FileStoreError otherwise): for small files and checks."""
    reader = open_verified(store, file_row(conn, import_id), import_id)
    try:
        return b"".join(reader.pieces())
    finally:
        reader.close()


def damaged_message(import_id: str) -> str:
    return (
        f"The kept file of import {import_id} is damaged (its bytes are not the ones imported) and cannot be sent; "
        "datasette glyph-files --verify reports every damaged file"
    )


# Re-import -------------------------------------------------------------------------------------------------


class NotReimportable(Exception):
    """The batch is unknown, or its original was not kept; ``status`` is 404."""

    status = 404


def reimport(conn: sqlite3.Connection, store: Optional[FileStore], import_id: str, *, actor=None, **options):
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
        reader = open_kept(store, row, import_id)
    except FileStoreError as e:
        if e.status == 503:
            raise StorageError("changed", "the re-import") from None
        raise NotReimportable(e.message) from None
    options.update(
        filename=row["filename"],
        source_name=row["source"],
        description=row["description"],
        actor=actor,
        expected_sha256=row["sha256"],
        original=Original.already_kept(store, row, reimport_of=import_id),
    )
    try:
        with contextlib.closing(reader):
            stream = reader.stream()
            if row["media_type"] != JSON_TYPE:
                return importer.import_csv(conn, stream, **options)
            return _reimport_json(importer, conn, stream, store, options)
    except Damaged:
        raise StorageError("changed", "the re-import") from None
    except (importer.ImportFailed, importer.InvalidJson):
        # A damaged file may fail to parse before its SHA-256 is known: say which it was.
        if not _intact(store, row):
            raise StorageError("changed", "the re-import") from None
        raise


def _reimport_json(importer, conn, stream, store: FileStore, options: dict):
    # A JSON body is read twice (scanned for its keys, then imported): decompressed to a private temp file.
    temp = Path(store.path).parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
    try:
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            for chunk in iter(lambda: stream.read(READ_CHUNK_BYTES), b""):
                out.write(chunk)
        return importer.import_json(conn, scan_json(temp), **options)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _intact(store: FileStore, row: dict) -> bool:
    try:
        reader = open_kept(store, row, row["import_id"])
    except FileStoreError:
        return False
    try:
        reader.verify()
        return True
    except Damaged:
        return False
    finally:
        reader.close()
