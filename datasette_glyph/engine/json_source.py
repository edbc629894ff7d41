"""Reading JSON import bodies: a list of records in memory, or a body on disk streamed record by record, turned
into the chunks of text cells the import checks and writes."""

from __future__ import annotations

import itertools
import json
import mmap
import os
import re
from dataclasses import dataclass
from typing import BinaryIO, Dict, Iterator, List, Tuple, Union

import ijson

from . import columns
from .columns import BadValue
from .errors import ImportFailed, located_error, quote, unusual_characters


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        if not value.isascii() and has_surrogate(value):
            raise BadValue(f"{quote(value)} is not text{unusual_characters(value)}")
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, Nested):
        raise BadValue(f"'{value.shown}' is {value.kind}, not a single value")
    raise BadValue(f"{quote(json.dumps(value))} is {json_type(value)}, not a single value")


def has_surrogate(text: str) -> bool:
    # JSON may spell half of a surrogate pair ("\ud800") on its own; no encoding can store that.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_keys(header: List[str], max_errors: int) -> None:
    bad_keys = [key for key in header if not key.isascii() and has_surrogate(key)]
    if bad_keys:
        errors = [
            located_error(None, None, key, f"Records: the key {quote(key)} is not text{unusual_characters(key)}")
            for key in bad_keys[:max_errors]
        ]
        raise ImportFailed(errors, max(0, len(bad_keys) - max_errors))


def record_chunks(header: List[str], numbered: Iterator[Tuple[int, object]]) -> Iterator[tuple]:
    """Records, numbered from 1, as chunks of rows for ``_run``: one cell per header key, problems found."""
    numbered = iter(numbered)
    while True:
        batch = list(itertools.islice(numbered, columns.CHUNK_ROWS))
        if not batch:
            return
        rows, locations, problems = [], [], []
        for number, record in batch:
            if not isinstance(record, dict):
                message = f"Record {number}: expected an object, found {json_type(record)}"
                problems.append((number, -1, located_error(None, None, None, message)))
                continue
            row, bad = [], []
            for position, key in enumerate(header):
                try:
                    row.append(cell(record.get(key)))
                except BadValue as e:
                    value = record[key]
                    shown = (
                        value
                        if isinstance(value, str)
                        else value.shown
                        if isinstance(value, Nested)
                        else json.dumps(value)
                    )
                    bad.append(
                        (number, position, located_error(None, key, shown, f"Record {number}, column {key}: {e}"))
                    )
            if bad:
                problems.extend(bad)
            else:
                rows.append(row)
                locations.append(number)
        yield rows, batch[0][0], locations, problems
        if len(batch) < columns.CHUNK_ROWS:
            return


# A JSON import body is read from a file, event by event (ijson over the yajl C parser), one record at a
# time: memory stays flat whatever the body's size and shape, and nesting of any depth costs a counter,
# never recursion. Values that are objects or arrays are refused, so their content is skipped, never kept.

# The most distinct keys the records of one body may use, and the longest key: keys are column names.
MAX_JSON_KEYS = 1000


MAX_JSON_KEY_CHARS = 1000


# Arrays and objects nested deeper than this inside a record are refused outright (a record's values are
# single values, so any nesting is refused anyway; this only stops reading sooner).
MAX_JSON_DEPTH = 64


# yajl copies a long string at each piece it reads: large pieces keep a long value from costing quadratic time
# (docs/benchmarks.md, "Tuned constants")
JSON_READ_BYTES = 1024 * 1024


class InvalidJson(Exception):
    """The body is not a JSON array of records: a syntax error, another top-level value, absurd keys."""


@dataclass(frozen=True)
class Nested:
    """An object or array where a single value belongs; only what it was is kept."""

    kind: str  # "an object" or "an array"
    shown: str  # "{…}" or "[…]"


_OBJECT, _ARRAY = Nested("an object", "{…}"), Nested("an array", "[…]")


_JSON_EVENT_TYPES = {
    "start_map": "an object",
    "start_array": "an array",
    "string": "a string",
    "integer": "a number",
    "double": "a number",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def _skip_container(events) -> None:
    depth = 1
    for event, _ in events:
        if event in ("start_map", "start_array"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise InvalidJson(
                    f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
                    "send an array of listing objects whose values are single values"
                )
        elif event in ("end_map", "end_array"):
            depth -= 1
            if depth == 0:
                return


# yajl, ijson's fast parser, turns an escaped lone surrogate ("\\ud800") into "?", which would store text that
# was never sent; ijson's Python parser keeps it, and the import then refuses it by record and column. The
# Python parser is about 20 times slower, so it reads only bodies that hold such an escape.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


_SURROGATE_PAIR = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def _has_lone_surrogate_escape(path: Union[str, os.PathLike]) -> bool:
    """True when the file may spell half a surrogate pair on its own (an escaped backslash may be a false alarm)."""
    if os.path.getsize(path) == 0:
        return False
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
        if not _SURROGATE_ESCAPE.search(view):
            return False
        halves = sum(1 for _ in _SURROGATE_ESCAPE.finditer(view))
        return halves != 2 * sum(1 for _ in _SURROGATE_PAIR.finditer(view))


def _json_error(e: Exception) -> str:
    lines = str(e).splitlines()
    first = lines[0] if lines and lines[0] else "unexpected end of the body"
    if first == "parse error: premature EOF":
        return "the body ends before the JSON does"
    near = lines[1].strip() if len(lines) > 1 else ""
    return f"{first.rstrip('.')} (near {near})" if near else first


def _json_records(stream: BinaryIO, parser=ijson) -> Iterator[Tuple[int, object]]:
    """(number, record) for each element of the top-level array; raises InvalidJson."""
    events = parser.basic_parse(stream, use_float=True, buf_size=JSON_READ_BYTES)
    try:
        first = next(events, None)
        if first is None:
            raise InvalidJson("The request body is not valid JSON: it holds no value")
        if first[0] != "start_array":
            raise InvalidJson(f"Send a JSON array of listing objects, not {_JSON_EVENT_TYPES.get(first[0], first[0])}")
        number = 0
        for event, value in events:
            if event == "end_array":
                break
            number += 1
            if event == "start_map":
                record: dict = {}
                key = None
                for event, value in events:
                    if event == "end_map":
                        break
                    if event == "map_key":
                        key = value
                    elif event == "start_map":
                        _skip_container(events)
                        record[key] = _OBJECT
                    elif event == "start_array":
                        _skip_container(events)
                        record[key] = _ARRAY
                    else:
                        record[key] = value
                yield number, record
            elif event == "start_array":
                _skip_container(events)
                yield number, _ARRAY
            else:
                yield number, value
        for _ in events:  # ijson itself refuses anything but white space after the array
            pass
    except ijson.JSONError as e:
        raise InvalidJson(f"The request body is not valid JSON: {_json_error(e)}") from None


@dataclass
class JsonBody:
    """A JSON import body on disk, read through once: its keys in order of first use and its size."""

    path: str
    header: List[str]
    records: int
    exact_parser: bool = False  # read with ijson's Python parser, which keeps lone surrogates as they were sent

    def records_in(self, stream: BinaryIO) -> Iterator[Tuple[int, object]]:
        return _json_records(stream, ijson.get_backend("python") if self.exact_parser else ijson)


def scan_json(path: Union[str, os.PathLike]) -> JsonBody:
    """Read a JSON import body once, record by record, to learn its keys; raises InvalidJson.

    Checks that it is valid JSON and an array, and that its keys are few and short enough to be columns. The
    header leaves out ``import_id`` and ``import_index`` when every record that has them gives null.
    """
    if os.path.getsize(path) == 0:
        raise InvalidJson("The request body is empty; send a JSON array of listing objects")
    keys: Dict[str, None] = {}
    valued = set()  # lineage keys some record gives a value other than null
    count = 0
    exact = _has_lone_surrogate_escape(path)
    with open(path, "rb") as f:
        for count, record in JsonBody(os.fspath(path), [], 0, exact).records_in(f):
            if isinstance(record, dict):
                for key in record:
                    if key in columns.LINEAGE_COLUMNS and record[key] is not None:
                        valued.add(key)
                    if key not in keys:
                        if len(key) > MAX_JSON_KEY_CHARS:
                            raise InvalidJson(
                                f"Record {count}: the key {quote(key)} is {len(key):,} characters long; "
                                f"a key (a column name) may be at most {MAX_JSON_KEY_CHARS:,}"
                            )
                        if len(keys) >= MAX_JSON_KEYS:
                            raise InvalidJson(f"The records use more than {MAX_JSON_KEYS:,} different keys")
                        keys[key] = None
    # Lineage keys sent as null (the old store's DTO) are no columns, not even ignored ones: the store assigns both.
    header = [key for key in keys if key not in columns.LINEAGE_COLUMNS or key in valued]
    return JsonBody(os.fspath(path), header, count, exact)


def json_type(value) -> str:
    """What a parsed JSON value is, in JSON's words: an object, an array, a string, a number, a boolean, null."""
    if isinstance(value, Nested):
        return value.kind
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
