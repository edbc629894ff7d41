"""Upkeep of kept originals: the startup sweep, verify, prune, delete one import's file, and moving the files of
stores made before migration 0010 (a folder of .gz files) in and out of the files database."""

from __future__ import annotations

import contextlib
import datetime
import gzip
import json
import os
import sqlite3
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .files import (
    CHUNK_BYTES,
    COMPRESS_LEVEL,
    OLD_NAME_RE,
    SWEEP_GRACE_SECONDS,
    TEMP_PREFIX,
    Damaged,
    FileStore,
    FileStoreError,
    delete_file_rows,
    file_row,
    has_removal_columns,
    has_store,
    has_table,
    not_kept_reason,
    now_text,
    open_kept,
)
from .sqlite import connect, open_read_only, transaction

# Sweep, verify, prune, delete ------------------------------------------------------------------------------


LIVE_SHAS_SQL = "SELECT DISTINCT sha256 FROM import_files WHERE removed_at IS NULL"


def _remove_unnamed(files_conn: sqlite3.Connection, live: set, older_than: Optional[float]) -> List[str]:
    """Remove the files no live batch names (written before ``older_than``, if given); return their names."""
    gone, ids = [], []
    for file_id, sha256, written_at in files_conn.execute("SELECT id, sha256, written_at FROM kept_files"):
        if sha256 in live or (older_than is not None and written_at > older_than):
            continue
        ids.append(file_id)
        gone.append(sha256 or f"{TEMP_PREFIX}{file_id}")
    if ids:
        delete_file_rows(files_conn, ids)
    return gone


def _give_back_space(files_conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        files_conn.execute("PRAGMA incremental_vacuum")


def sweep(conn: sqlite3.Connection, store: Optional[FileStore], grace_seconds: float = SWEEP_GRACE_SECONDS) -> list:
    """Remove this store's files that no committed batch names (those of imports that never finished included),
    when older than ``grace_seconds``; return their names. Runs holding the store's write lock."""
    if store is None or not has_store(conn):
        return []
    files_conn = store.connect()
    try:
        with transaction(conn, "glyph_sweep", "the sweep of kept files"):
            live = {row[0] for row in conn.execute(LIVE_SHAS_SQL)}
            with transaction(files_conn, "glyph_sweep", "the sweep of kept files"):
                removed = _remove_unnamed(files_conn, live, time.time() - grace_seconds)
        if removed:
            _give_back_space(files_conn)
    finally:
        files_conn.close()
    return sorted(removed)


@dataclass
class Problem:
    """A kept file that is missing or whose bytes no longer have their SHA-256."""

    sha256: str
    kind: str  # missing, damaged
    import_ids: List[str]
    detail: str = ""


def verify(conn: sqlite3.Connection, store: Optional[FileStore]) -> tuple:
    """Recompute every kept file's SHA-256 (decompressing it) against the batches naming it.

    Returns (files checked, list of Problem).
    """
    batches: Dict[str, List[str]] = {}
    rows: Dict[str, dict] = {}
    for import_id, sha256, size in conn.execute(
        "SELECT import_id, sha256, bytes FROM import_files WHERE removed_at IS NULL ORDER BY rowid"
    ):
        batches.setdefault(sha256, []).append(import_id)
        rows[sha256] = {"sha256": sha256, "bytes": size, "removed_at": None}
    problems = []
    where = store.path if store is not None else "the files database"
    for sha256, import_ids in batches.items():
        try:
            reader = open_kept(store, rows[sha256], import_ids[0])
        except FileStoreError as e:
            kind = "missing" if e.status == 404 else "damaged"
            detail = f"not in {where}" if kind == "missing" else e.message
            problems.append(Problem(sha256, kind, import_ids, detail))
            continue
        try:
            reader.verify()
        except Damaged as e:
            problems.append(Problem(sha256, "damaged", import_ids, str(e)))
        finally:
            reader.close()
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


def _mark_removed(conn, ids: List[str], when: str, how: str, by: Optional[str]) -> None:
    if has_removal_columns(conn):
        conn.executemany(
            "UPDATE import_files SET removed_at = ?, removed_how = ?, removed_by = ? WHERE import_id = ?",
            [(when, how, by, i) for i in ids],
        )
    else:
        conn.executemany("UPDATE import_files SET removed_at = ? WHERE import_id = ?", [(when, i) for i in ids])


def _remove_files(conn: sqlite3.Connection, store: Optional[FileStore], shas: List[str], action: str) -> None:
    """Remove the files of ``shas`` that no batch names any more, under the store's write lock."""
    if store is None or not shas:
        return
    files_conn = store.connect()
    try:
        with transaction(conn, "glyph_prune", action):
            live = {row[0] for row in conn.execute(LIVE_SHAS_SQL)}
            gone = [sha for sha in shas if sha not in live]
            with transaction(files_conn, "glyph_prune", action):
                ids = [
                    row[0]
                    for row in files_conn.execute(
                        "SELECT id FROM kept_files WHERE sha256 IN (SELECT value FROM json_each(?))", [json.dumps(gone)]
                    )
                ]
                delete_file_rows(files_conn, ids)
        _give_back_space(files_conn)
    finally:
        files_conn.close()


def prune(
    conn: sqlite3.Connection,
    store: Optional[FileStore],
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
                _mark_removed(conn, ids, removed_at, "pruned", None)
                result.removed_files.append(sha256)
                result.batches.extend(ids)
                result.bytes_freed += rows[0][2]
    _remove_files(conn, store, result.removed_files, "the prune of kept files")
    return result


@dataclass
class Deleted:
    """What ``delete`` did: the batch's file, and the batches that still name the same bytes (then kept)."""

    import_id: str
    sha256: str
    stored_bytes: int
    removed_at: str
    still_named_by: List[str]


class NotDeletable(Exception):
    """The batch has no kept file to delete (never kept, or already removed)."""


def delete(
    conn: sqlite3.Connection, store: Optional[FileStore], import_id: str, *, actor: Optional[str] = None
) -> Deleted:
    """Remove one batch's kept original, recording who did it and when (``removed_at``, ``removed_by``,
    ``removed_how`` = ``deleted`` in ``import_files``). The bytes stay while another batch names them."""
    removed_at = now_text()
    with transaction(conn, "glyph_delete_file", "the deletion of a kept file"):
        row = file_row(conn, import_id)
        reason = not_kept_reason(row, import_id)
        if reason:
            raise NotDeletable(reason)
        _mark_removed(conn, [import_id], removed_at, "deleted", actor)
        others = [
            r[0]
            for r in conn.execute(
                "SELECT import_id FROM import_files WHERE sha256 = ? AND removed_at IS NULL ORDER BY rowid",
                [row["sha256"]],
            )
        ]
    _remove_files(conn, store, [row["sha256"]], "the deletion of a kept file")
    return Deleted(import_id, row["sha256"], row["stored_bytes"], removed_at, others)


def set_keep(conn: sqlite3.Connection, import_id: str, keep: bool) -> bool:
    """Mark a batch's file as one prune must never remove (or release the mark); False if it has no file row."""
    with transaction(conn, "glyph_keep", "the keep mark"):
        cursor = conn.execute("UPDATE import_files SET keep = ? WHERE import_id = ?", [int(keep), import_id])
    return cursor.rowcount == 1


# Moving files kept as .gz in a folder (before migration 0010) in and out ------------------------------------------


@dataclass
class Moved:
    moved: List[str] = field(default_factory=list)  # SHA-256 of each file now in the files database
    left: List[str] = field(default_factory=list)  # names of files left in the folder (not gzip, no batch names)


def move_folder_in(conn: sqlite3.Connection, store: FileStore, folder: Path) -> Moved:
    """Copy the ``<sha256>.gz`` files of ``folder`` that this store's batches name into its files database (as
    they are: a damaged one stays damaged, for ``verify`` to report), then remove them and, once empty, the folder.

    Files that no batch of this store names are left where they are: they may be another store's."""
    result = Moved()
    folder = Path(folder)
    if not folder.is_dir():
        return result
    live = {row[0] for row in conn.execute(LIVE_SHAS_SQL)} if has_store(conn) else set()
    store.ensure()
    store.record(conn)
    files_conn = store.connect()
    try:
        for entry in sorted(os.listdir(folder)):
            match = OLD_NAME_RE.match(entry)
            if match is None or match.group(1) not in live:
                result.left.append(entry)
                continue
            sha256 = match.group(1)
            if files_conn.execute("SELECT 1 FROM kept_files WHERE sha256 = ?", [sha256]).fetchone() is None:
                try:
                    _copy_gz_in(files_conn, folder / entry, sha256)
                except (OSError, EOFError, zlib.error):
                    result.left.append(entry)
                    continue
            result.moved.append(sha256)
        for sha256 in result.moved:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / f"{sha256}.gz")
    finally:
        files_conn.close()
    for entry in list(result.left):
        if entry.startswith(TEMP_PREFIX):  # an import killed mid-write left it: nothing names it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / entry)
            result.left.remove(entry)
    with contextlib.suppress(OSError):
        folder.rmdir()
    return result


def _copy_gz_in(files_conn: sqlite3.Connection, path: Path, sha256: str) -> None:
    with gzip.open(path, "rb") as source, transaction(files_conn, "glyph_move", "moving kept files in"):
        cursor = files_conn.execute("INSERT INTO kept_files (sha256, written_at) VALUES (NULL, ?)", [time.time()])
        file_id, seq, size, stored = cursor.lastrowid, 0, 0, 0
        for piece in iter(lambda: source.read(CHUNK_BYTES), b""):
            data = zlib.compress(piece, COMPRESS_LEVEL)
            files_conn.execute("INSERT INTO kept_chunks (file_id, seq, data) VALUES (?, ?, ?)", [file_id, seq, data])
            seq, size, stored = seq + 1, size + len(piece), stored + len(data)
        files_conn.execute(
            "UPDATE kept_files SET sha256 = ?, bytes = ?, stored_bytes = ?, chunks = ? WHERE id = ?",
            [sha256, size, stored, seq, file_id],
        )


def write_folder_out(files_db: Path, folder: Path) -> List[str]:
    """Write every file of a files database back as ``<sha256>.gz`` into ``folder`` (created 0700); return the
    SHA-256 of each. What going down from migration 0010 does."""
    written = []
    if not Path(files_db).exists():
        return written
    folder = Path(folder)
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    files_conn = connect(files_db)
    try:
        for file_id, sha256 in files_conn.execute(
            "SELECT id, sha256 FROM kept_files WHERE sha256 IS NOT NULL ORDER BY id"
        ).fetchall():
            temp = folder / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with gzip.GzipFile(fileobj=os.fdopen(fd, "wb"), mode="wb", compresslevel=COMPRESS_LEVEL) as out:
                for (data,) in files_conn.execute(
                    "SELECT data FROM kept_chunks WHERE file_id = ? ORDER BY seq", [file_id]
                ):
                    out.write(zlib.decompress(data))
            os.replace(temp, folder / f"{sha256}.gz")
            written.append(sha256)
    finally:
        files_conn.close()
    return written


def files_db_owner(files_db: Path) -> Optional[tuple]:
    """``(store_id, store_path)`` recorded in a files database, or None."""
    if not Path(files_db).exists():
        return None
    files_conn = open_read_only(files_db)
    try:
        if not has_table(files_conn, "kept_store"):
            return None
        return files_conn.execute("SELECT store_id, store_path FROM kept_store").fetchone()
    finally:
        files_conn.close()


def remove_files_db(files_db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{files_db}{suffix}")
