"""How a refused import explains itself: ImportFailed and the error objects it lists, each naming the line (or
record), column and value."""

from __future__ import annotations

import unicodedata
from typing import List, Optional

# Longest value quoted back in an error.
MAX_ERROR_VALUE_CHARS = 200


class ImportFailed(Exception):
    """The input was refused and nothing was written.

    ``errors`` lists up to ``max_errors`` problems as ``{"line", "column", "value", "message"}``;
    ``more`` counts the problems found beyond those.
    """

    def __init__(self, errors: List[dict], more: int = 0):
        self.errors = errors
        self.more = more
        summary = errors[0]["message"] if errors else "Import failed"
        if len(errors) + more > 1:
            others = len(errors) + more - 1
            summary += f" (and {others} more error{'s' if others != 1 else ''})"
        super().__init__(summary)

    def to_dict(self) -> dict:
        return {"ok": False, "errors": self.errors, "more": self.more}


def located_error(line: Optional[int], column: Optional[str], value: Optional[str], message: str) -> dict:
    if value is not None and len(value) > MAX_ERROR_VALUE_CHARS:
        value = value[:MAX_ERROR_VALUE_CHARS] + "…"
    return {"line": line, "column": column, "value": value, "message": message}


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if " " <= char <= "~":
        return char
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def quote(value: str) -> str:
    """A value for an error message: shortened, and with every character that is not printable ASCII escaped,
    so that a byte order mark, a zero-width space or a Cyrillic letter that looks Latin can be seen."""
    if len(value) > 60:
        value = value[:60] + "…"
    if value.isascii() and value.isprintable():
        return "'" + value + "'"
    return "'" + "".join(_escape(c) if c != "…" else c for c in value) + "'"


# Names for characters that unicodedata has none for, or whose name does not say what they usually are.
_CHARACTER_NOTES = {
    "\ufeff": "ZERO WIDTH NO-BREAK SPACE, a byte order mark",
    "\x00": "NUL, a zero byte",
    "\t": "a tab",
}


def _character_name(char: str) -> str:
    if char in _CHARACTER_NOTES:
        return _CHARACTER_NOTES[char]
    if "\ud800" <= char <= "\udfff":
        return "a lone surrogate, which is not a character"
    return unicodedata.name(char, "a control character" if unicodedata.category(char) == "Cc" else "unnamed")


def unusual_characters(value: str) -> str:
    """'' for printable ASCII; else "; it contains \\u041d (CYRILLIC CAPITAL LETTER EN)" for up to three."""
    if value.isascii() and value.isprintable():
        return ""
    found = list(dict.fromkeys(c for c in value if not " " <= c <= "~" and c not in "\n\r"))
    if not found:
        return ""
    named = [f"{_escape(c)} ({_character_name(c)})" for c in found[:3]]
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return "; it contains " + ", ".join(named) + more
