"""The checks of one import's records that need no database: the header against the column specification, and
each chunk of records typed column by column, with every problem located. The importing process and the
reading process (``reading.py``) run the same checks."""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

from .columns import COLUMNS, CSV_HEADER_EXAMPLE, REQUIRED_COLUMNS
from .errors import located_error


def start_lines(rows: List[List[str]], first_line: int) -> List[int]:
    starts, line = [], first_line
    for row in rows:
        starts.append(line)
        line += 1 + sum(field.count("\n") for field in row)
    return starts


# Delimiters other than the comma that spreadsheets save "CSV" files with (Excel uses ';' where a comma is the
# decimal separator).
OTHER_DELIMITERS = (";", "\t")


def other_delimiter(header: List[str], missing: List[str]) -> Optional[str]:
    """The delimiter (``;`` or a tab) that separates the header's names, when splitting the header on it finds
    required columns that are missing; else None."""
    for delimiter in OTHER_DELIMITERS:
        if any(delimiter in field for field in header):
            names = {part.strip() for field in header for part in field.split(delimiter)}
            if names.intersection(missing):
                return delimiter
    return None


def spelling(name: str) -> str:
    """A column name without case, spaces, hyphens and underscores: ``Canonical Model`` -> ``canonicalmodel``."""
    return re.sub(r"[\s_-]+", "", name).lower()


class RecordChecks:
    """The checks of one import's records, which need no database: the header, the values of each chunk of
    records, and the errors found (the reading process of ``reading.py`` runs them too)."""

    def __init__(self, header: List[str], max_errors: int, record_label: Optional[str]):
        self.max_errors = max_errors
        self.record_label = record_label  # None: locations are CSV lines; "Record": 1-based positions
        self.errors: List[dict] = []
        self.more = 0
        self.width = len(header)
        self.ignored, self.used = [], []  # used: (position in row, Column)
        self.header_errors = self._read_header(header)

    def _read_header(self, header: List[str]) -> List[dict]:
        errors = []
        seen: Dict[str, int] = {}
        loc = "Line 1" if self.record_label is None else "Records"
        line = 1 if self.record_label is None else None
        if not any(name.strip() for name in header):
            return [
                located_error(
                    line, None, None, f"{loc}: the header is empty; expected column names such as {CSV_HEADER_EXAMPLE}"
                )
            ]
        for position, raw_name in enumerate(header):
            name = raw_name.strip()
            if not name:
                what = f"column {position + 1} of the header" if self.record_label is None else "a key"
                errors.append(
                    located_error(
                        line, None, raw_name, f"{loc}: {what} has no name; name every column (or remove the empty ones)"
                    )
                )
                continue
            if name in seen:
                errors.append(
                    located_error(
                        line,
                        name,
                        None,
                        f"{loc}: column {name} appears more than once in the header "
                        f"(fields {seen[name] + 1} and {position + 1})",
                    )
                )
                continue
            seen[name] = position
            if name in COLUMNS:
                self.used.append((position, COLUMNS[name]))
            else:
                self.ignored.append(name)
        missing = [name for name in REQUIRED_COLUMNS if name not in seen]
        delimiter = other_delimiter(header, missing) if self.record_label is None else None
        if delimiter:
            # One field holding every name: a file saved with another delimiter. One error says it all.
            shown = "tabs" if delimiter == "\t" else f"'{delimiter}'"
            return [
                located_error(
                    line, None, None, f"{loc}: the header uses {shown} between names; save the file with commas"
                )
            ]
        near = {spelling(name): name for name in seen if name not in COLUMNS}
        for name in missing:
            where = "from the header" if self.record_label is None else "from every record"
            message = f"{loc}: required column {name} is missing {where}"
            if spelling(name) in near:
                has = "the header has" if self.record_label is None else "the records have"
                message += f"; did you mean {name} ({has} {near[spelling(name)]})?"
            errors.append(located_error(line, name, None, message))
        return errors

    def take(self, errors: List[dict], more: int) -> None:
        """Add errors found elsewhere (by the reading process), and the count of those it found beyond them."""
        for found in errors:
            self.fail(found)
        self.more += more

    def fail(self, error: dict) -> None:
        if len(self.errors) < self.max_errors:
            self.errors.append(error)
        else:
            self.more += 1

    def _where(self, location: int, column: Optional[str] = None) -> Tuple[Optional[int], str]:
        if self.record_label is None:
            prefix = f"Line {location}"
            line = location
        else:
            prefix = f"{self.record_label} {location}"
            line = None
        return line, prefix + (f", column {column}" if column else "")

    def prepare(
        self,
        rows: List[List[str]],
        first_location: int,
        locations: Optional[List[int]] = None,
        problems: Optional[List[Tuple[int, int, dict]]] = None,
    ) -> Optional[List[Sequence]]:
        """Validate and type rows, without touching the database: the typed columns to write (one sequence per
        column of ``used``), or None once anything has failed. Problems are recorded in ``errors``.

        Records start at ``first_location`` (CSV: physical lines, worked out from the rows) or at the
        given ``locations``; ``problems`` are ``(location, field, error)`` found before typing.
        """
        found = list(problems or [])
        if rows and locations is None and len(rows) != list(map(len, rows)).count(self.width):
            locations = start_lines(rows, first_location)
        if rows and locations is not None:
            kept, kept_locations = [], []
            for row, location in zip(rows, locations):
                if len(row) == self.width:
                    kept.append(row)
                    kept_locations.append(location)
                elif row:  # a blank line is no record
                    line, where = self._where(location)
                    message = f"{where}: expected {self.width} fields as in the header, found {len(row)}"
                    found.append((location, -1, located_error(line, None, None, message)))
            rows, locations = kept, kept_locations
        typed = []
        if rows:
            columns = list(zip(*rows))
            for position, column in self.used:
                values, bad = column.convert(columns[position])
                typed.append(values)
                if bad and locations is None:
                    locations = start_lines(rows, first_location)
                for index, message in bad:
                    line, where = self._where(locations[index], column.name)
                    error = located_error(line, column.name, columns[position][index], f"{where}: {message}")
                    found.append((locations[index], position, error))
        # Report in file order, whatever order the columns were checked in.
        for _, _, error in sorted(found, key=lambda item: item[:2]):
            self.fail(error)
        if rows and not self.errors:
            return typed
        return None
