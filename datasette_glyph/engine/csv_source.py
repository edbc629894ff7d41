"""Reading a CSV file: whole physical lines, UTF-8 decoding, the csv module in strict mode, chunks of records
with the line each starts on, and the bytes hashed and counted on their way in."""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import itertools
import os
import stat
from typing import BinaryIO, Callable, Iterator, List, Optional, Tuple

from . import columns
from .columns import MAX_FIELD_CHARS
from .errors import located_error

# The longest physical line accepted (a header, or a record without quoted newlines). Lines are read in pieces
# of READ_LINE_BYTES and joined, so a record is never cut at a buffer's edge; a line longer than this is refused.
MAX_LINE_BYTES = 16 * 1024 * 1024


READ_LINE_BYTES = 1024 * 1024


READ_BUFFER_BYTES = 1024 * 1024


class HashingReader(io.RawIOBase):
    """A raw stream over the source that hashes and counts every byte on its way to the CSV parser."""

    def __init__(self, source, progress: Optional[Callable[[int], None]] = None, copy=None):
        self._source = source
        self._progress = progress
        self._copy = copy  # gets every chunk too: the store of kept originals (files.Original.write)
        self.sha256 = hashlib.sha256()
        self.count = 0
        self._readinto = getattr(source, "readinto", None)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._readinto is not None:
            n = self._readinto(buffer)
        else:
            data = self._source.read(len(buffer))
            if isinstance(data, str):
                raise TypeError("import_csv needs a binary file object (open the file with 'rb')")
            n = len(data)
            buffer[:n] = data
        if n:
            view = memoryview(buffer)[:n]
            self.sha256.update(view)
            self.count += n
            if self._copy is not None:
                self._copy(view)
            if self._progress is not None:
                self._progress(self.count)
        return n or 0

    def tell(self) -> int:
        return self.count


class Unreadable(Exception):
    """The input cannot be read any further (broken encoding, CSV syntax, absurd field)."""

    def __init__(self, error: dict):
        self.error = error
        super().__init__(error["message"])


class CsvSource:
    """CSV records in chunks, with the physical line on which each record starts (header = line 1)."""

    def __init__(self, stream: BinaryIO):
        self._buffer = stream
        self._lines = _whole_lines(stream)
        try:
            first = next(self._lines, None)
        except _LineTooLong:
            raise Unreadable(_line_too_long(1)) from None
        self.empty = first is None
        first = first or b""
        self._bom = len(codecs.BOM_UTF8) if first.startswith(codecs.BOM_UTF8) else 0
        first = first[self._bom :]
        self._first_raw = first
        self._sniff(first)
        text = itertools.chain([self._decode(first)] if not self.empty else [], map(bytes.decode, self._lines))
        self._reader = csv.reader(text, strict=True)
        self.lines_read = 0  # physical lines in the records returned so far

    @staticmethod
    def _sniff(first: bytes) -> None:
        """Refuse, by their first line, files that are plainly not UTF-8 CSV."""
        kind = None
        if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            kind = "UTF-16 text; save it as UTF-8"
        elif b"\x00" in first:
            kind = "binary data"
        elif first.lstrip()[:1] == b"<":
            kind = "HTML or XML"
        elif first.lstrip()[:1] in (b"{", b"["):
            kind = "JSON"
        if kind is not None:
            sample = first[:40].decode("utf-8", "replace") if kind in ("HTML or XML", "JSON") else None
            raise Unreadable(located_error(1, None, sample, f"Line 1: this is not a CSV file; it starts like {kind}"))

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self._decode_error(e, line=1, line_offset=self._bom) from None

    def _decode_error(self, e: UnicodeDecodeError, line: int, line_offset: int) -> Unreadable:
        offset = line_offset + e.start
        bad = e.object[e.start : e.end]
        return Unreadable(
            located_error(
                line,
                None,
                None,
                f"Line {line}: not valid UTF-8 (byte {bad.hex(' ', 1)} at byte offset {offset} of the file); "
                "save the file as UTF-8",
            )
        )

    def header(self) -> List[str]:
        """The header row; raises Unreadable when it cannot be read."""
        rows, fatal = self.chunk(1)
        if fatal is not None:
            raise fatal
        return rows[0] if rows else []

    def chunk(self, n: int) -> Tuple[List[List[str]], Optional[Unreadable]]:
        """Up to n records, and the error that stopped reading early, if any."""
        rows: List[List[str]] = []
        fatal = None
        try:
            rows.extend(itertools.islice(self._reader, n))
            self.lines_read = self._reader.line_num
        except _LineTooLong:
            fatal = Unreadable(_line_too_long(self._reader.line_num + 1))
        except UnicodeDecodeError as e:
            line = self._reader.line_num + 1
            line_offset = self._buffer.tell() - len(e.object)
            fatal = self._decode_error(e, line, line_offset)
        except csv.Error as e:
            line = self.lines_read + _lines_in(rows) + 1
            if "field larger than field limit" in str(e):
                fatal = Unreadable(
                    located_error(
                        line,
                        None,
                        None,
                        f"Line {line}: a field is longer than {MAX_FIELD_CHARS:,} characters "
                        "(an unclosed quote, or not a CSV file?)",
                    )
                )
            else:
                explained = CSV_ERRORS.get(str(e), str(e))
                fatal = Unreadable(located_error(line, None, None, f"Line {line}: malformed CSV: {explained}"))
        return rows, fatal


# What the csv module's strict-mode complaints mean for a person fixing the file.
CSV_ERRORS = {
    "unexpected end of data": "a quoted field is still open at the end of the file",
    "',' expected after '\"'": "a closing quote must be followed by a comma or the end of the line",
    "new-line character seen in unquoted field - do you need to open the file in universal-newline mode?": (
        "a line ends with a bare carriage return; lines must end with \\n or \\r\\n"
    ),
}


class _LineTooLong(Exception):
    """A physical line is longer than MAX_LINE_BYTES."""


def csv_chunks(csv_source: CsvSource) -> Iterator[Tuple[List[List[str]], int, Optional[Unreadable]]]:
    """The records after the header in chunks of ``columns.CHUNK_ROWS``: (rows, the line the first one starts on,
    the error that stopped reading or None). The last chunk is a short one, or the one that met the error."""
    while True:
        first_line = csv_source.lines_read + 1
        rows, fatal = csv_source.chunk(columns.CHUNK_ROWS)
        yield rows, first_line, fatal
        if fatal is not None or len(rows) < columns.CHUNK_ROWS:
            return


def _whole_lines(stream: BinaryIO) -> Iterator[bytes]:
    """The stream's physical lines, each whole however long (up to MAX_LINE_BYTES), ending in b"\\n" but the last.

    Reading a long line in pieces and handing the pieces on as lines would make the csv module end a record
    at each piece: one long record would become several, the later ones made up of the first one's tail.
    """
    read = functools.partial(stream.readline, READ_LINE_BYTES)
    for piece in iter(read, b""):
        if piece.endswith(b"\n"):
            yield piece
            continue
        pieces, size = [piece], len(piece)
        while not piece.endswith(b"\n"):
            piece = read()
            if not piece:
                break
            size += len(piece)
            if size > MAX_LINE_BYTES:
                raise _LineTooLong()
            pieces.append(piece)
        yield b"".join(pieces)


def _line_too_long(line: int) -> dict:
    return located_error(
        line,
        None,
        None,
        f"Line {line}: longer than {MAX_LINE_BYTES:,} bytes (an unclosed quote, or not a CSV file?)",
    )


def _lines_in(rows: List[List[str]]) -> int:
    """Physical lines the rows took: one each, plus one per newline inside a quoted field."""
    return len(rows) + sum(field.count("\n") for row in rows for field in row if "\n" in field)


def set_field_limit() -> None:
    # The limit is process-wide in the csv module; every import sets the same value.
    csv.field_size_limit(MAX_FIELD_CHARS)


def file_size(source) -> Optional[int]:
    """The size of the file behind a binary stream, or None (a pipe, a socket, a stream without a file)."""
    try:
        info = os.fstat(source.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None
