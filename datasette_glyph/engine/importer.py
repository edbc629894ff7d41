"""Import scored listing CSV files and JSON records: the entry points every door (CLI, API, upload page,
re-import) calls.

A file becomes one ``import_batches`` row (a fresh ``import_id``, the file's name, SHA-256 and size, who and
when) and one ``scored_listings`` row per record, numbered ``import_index`` 1..n in file order, in one
transaction: a file with any invalid record writes nothing, and the error list names the line, column and
value of each problem."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
from typing import BinaryIO, Callable, List, Optional, Tuple, Union

from . import reading
from .batch import ImportResult, utcnow, write_import
from .csv_source import READ_BUFFER_BYTES, CsvSource, HashingReader, Unreadable, csv_chunks, file_size, set_field_limit
from .errors import ImportFailed, located_error
from .json_source import JSON_READ_BYTES, InvalidJson, JsonBody, check_keys, record_chunks
from .sqlite import StorageError


def import_csv(
    conn: sqlite3.Connection,
    source: Union[str, os.PathLike, BinaryIO],
    *,
    filename: Optional[str] = None,
    source_name: Optional[str] = None,
    description: Optional[str] = None,
    actor: Optional[str] = None,
    progress: Optional[Callable[[int], None]] = None,
    max_errors: int = 50,
    before_commit: Optional[Callable[[sqlite3.Connection, ImportResult], None]] = None,
    expected_sha256: Optional[str] = None,
    original=None,
) -> ImportResult:
    """Import one scored listings CSV file (a path, or a binary file object) as a new batch.

    ``filename`` is recorded as the file's name (default: the path as given). ``progress`` is called
    with the number of bytes read so far. Raises ImportFailed, having written nothing, if any record
    is invalid; StorageError if the file's SHA-256 is not ``expected_sha256`` (an upload replaced on disk).
    ``original`` (a ``files.Original``) gets the bytes as they are read and keeps them with the batch.
    ``before_commit(conn, result)`` runs inside the import's transaction once every row is written: what it
    writes commits with the batch, and an exception from it rolls the whole import back.
    """
    started = utcnow()
    set_field_limit()
    with contextlib.ExitStack() as stack:
        if isinstance(source, (str, os.PathLike)):
            raw_source = stack.enter_context(open(source, "rb", buffering=0))
            filename = os.fspath(source) if filename is None else filename
        else:
            raw_source = source
        if original is not None:
            stack.callback(original.discard)  # a file refused before its rows are read keeps nothing
        copy = original.write if original is not None else None
        size = file_size(raw_source)
        reader = _start_reader(source, raw_source, size, max_errors, progress, copy)
        if reader is not None:
            stack.callback(reader.close)
            hashing = HashingReader(raw_source)  # the header, read here too; the reader hashes and copies the file
        else:
            hashing = HashingReader(raw_source, progress, copy)
        stream = io.BufferedReader(hashing, READ_BUFFER_BYTES)
        try:
            csv_source = CsvSource(stream)
            if csv_source.empty:
                raise ImportFailed(
                    [located_error(None, None, None, "The file is empty (0 bytes); expected a CSV header and rows")]
                )
            header = csv_source.header()
        except Unreadable as e:
            raise ImportFailed([e.error]) from None
        pending: List[Optional[Unreadable]] = [None]
        read = (0, 1)  # (records, bytes of the file) read so far, for the batch's size estimate

        def chunks():
            nonlocal read
            records = 0
            for rows, first_line, fatal in csv_chunks(csv_source):
                records += len(rows)
                read = (records, max(1, stream.tell()))
                yield rows, first_line, None, None
                pending[0] = fatal

        def digest():
            if reader is not None:
                return _verified(*reader.digest(), expected_sha256)
            stream.read()  # anything after the last record (normally nothing) belongs to the file too
            return _verified(hashing.sha256.hexdigest(), hashing.count, expected_sha256)

        def fatal_check() -> Optional[dict]:
            if reader is not None:
                return reader.fatal
            return pending[0].error if pending[0] else None

        def size_hint(_rows: int) -> Optional[int]:
            records, position = read if reader is None else reader.read
            return None if size is None else records * size // position

        return write_import(
            conn,
            header,
            (lambda writer: writer.add_chunks(chunks())) if reader is None else reader.feed,
            started=started,
            filename=filename,
            source_name=source_name,
            description=description,
            actor=actor,
            max_errors=max_errors,
            digest=digest,
            fatal_check=fatal_check,
            original=original,
            before_commit=before_commit,
            size_hint=size_hint,
        )


def _start_reader(source, raw_source, size: Optional[int], max_errors: int, progress, copy) -> Optional[reading.Reader]:
    """A second process reading the file (``reading.Reader``), for a large file with a path that names the very
    file being read, from its start; None otherwise (then this process reads it), or if the process cannot start.

    A stream is read there only if it is a plain file as ``open()`` returns it: a stream that decodes what it
    reads (a kept original, gzipped) has the name and the descriptor of a file whose bytes are not the CSV's.
    """
    if size is None or size < reading.PARALLEL_MIN_BYTES:
        return None
    try:
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
        else:
            path = getattr(source, "name", None)
            if type(source) not in (io.BufferedReader, io.FileIO) or not isinstance(path, str) or source.tell():
                return None
        fd = raw_source.fileno()
        named = os.stat(path)
        if reading.file_identity(fd) != (named.st_dev, named.st_ino):
            return None
        return reading.Reader(path, fd, max_errors, progress, copy)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def _verified(sha256: str, count: int, expected_sha256: Optional[str]) -> Tuple[str, int]:
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise StorageError("changed", "the import")
    return sha256, count


def import_records(
    conn: sqlite3.Connection,
    records: list,
    *,
    source_name: Optional[str] = None,
    description: Optional[str] = None,
    actor: Optional[str] = None,
    filename: Optional[str] = None,
    max_errors: int = 50,
    original=None,
    before_commit: Optional[Callable[[sqlite3.Connection, ImportResult], None]] = None,
    received: Optional[Tuple[str, int]] = None,
) -> ImportResult:
    """Import a list of listing objects (the older JSON payload; keys as the CSV columns) as a new batch.

    Same validation and write path as :func:`import_csv`; errors name the record (1-based) instead of a
    line. ``sha256`` and ``bytes`` are ``received``, those of the body the records were read from (the original
    kept with them), or without it those of the records as canonical JSON (sorted keys, no spaces).
    """
    started = utcnow()
    if not isinstance(records, list):
        raise ImportFailed([located_error(None, None, None, "Expected a list of listing objects")])
    if not records:
        raise ImportFailed([located_error(None, None, None, "No records to import: the list is empty")])
    header = list(dict.fromkeys(key for record in records if isinstance(record, dict) for key in record))
    check_keys(header, max_errors)

    def digest() -> Tuple[str, int]:
        if received is not None:
            return received
        payload = json.dumps(records, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(payload).hexdigest(), len(payload)

    return write_import(
        conn,
        header,
        lambda writer: writer.add_chunks(record_chunks(header, enumerate(records, 1))),
        started=started,
        filename=filename,
        source_name=source_name,
        description=description,
        actor=actor,
        max_errors=max_errors,
        digest=digest,
        record_label="Record",
        original=original,
        before_commit=before_commit,
        size_hint=lambda _rows: len(records),
    )


def import_json(
    conn: sqlite3.Connection,
    body: JsonBody,
    *,
    expected_sha256: Optional[str] = None,
    source_name: Optional[str] = None,
    description: Optional[str] = None,
    actor: Optional[str] = None,
    filename: Optional[str] = None,
    max_errors: int = 50,
    original=None,
    before_commit: Optional[Callable[[sqlite3.Connection, ImportResult], None]] = None,
) -> ImportResult:
    """Import a JSON body scanned by :func:`scan_json` (an array of listing objects) as a new batch.

    The same validation and write path as :func:`import_records`, reading one record at a time. ``sha256``
    and ``bytes`` describe the body as received; StorageError if it is not ``expected_sha256``.
    """
    started = utcnow()
    if body.records == 0:
        raise ImportFailed([located_error(None, None, None, "No records to import: the list is empty")])
    check_keys(body.header, max_errors)
    with open(body.path, "rb", buffering=0) as raw:
        hashing = HashingReader(raw, copy=original.write if original is not None else None)
        stream = io.BufferedReader(hashing, JSON_READ_BYTES)

        def digest():
            stream.read()
            return _verified(hashing.sha256.hexdigest(), hashing.count, expected_sha256)

        try:
            return write_import(
                conn,
                body.header,
                lambda writer: writer.add_chunks(record_chunks(body.header, body.records_in(stream))),
                started=started,
                filename=filename,
                source_name=source_name,
                description=description,
                actor=actor,
                max_errors=max_errors,
                digest=digest,
                record_label="Record",
                original=original,
                before_commit=before_commit,
                size_hint=lambda _rows: body.records,
            )
        except InvalidJson:
            raise StorageError("changed", "the import") from None  # it parsed once: the file was changed
