"""The bad input corpus: requests a client might send by mistake or in malice, and what each must get back.

Every case is a whole HTTP request (method, path, headers, body) and its expected answer: a 4xx status and,
for the plugin's own JSON API, the exact error messages. ``tests/test_bad_input.py`` sends each one to a real
server and checks that the database is unchanged afterwards. Bodies are built here rather than kept as files so
that each reads as what it is (a UTF-16 file, a 3 MB line, ...), and so that the corpus costs nothing in git.

``MAX_UPLOAD_BYTES`` is the small upload limit the server runs with, so that "too big" is cheap to send.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional
from urllib.parse import quote

from .server import multipart_envelope

MAX_UPLOAD_BYTES = 4 * 1024 * 1024

HEADER = [
    "canonical_model",
    "vram_gb",
    "mig_support",
    "nvlink",
    "tdp_watts",
    "price",
    "score",
    "condition",
    "quantity",
    "min_order_qty",
    "seller",
    "region",
    "source_url",
    "source_type",
    "seen_at",
    "generation",
    "cuda_cores",
    "slot_width",
    "pcie_generation",
    "form_factor",
    "notes",
    "warnings",
    "title",
]

GOOD_ROW = {
    "canonical_model": "RTX_4090",
    "vram_gb": "24",
    "mig_support": "0",
    "nvlink": "False",
    "tdp_watts": "450",
    "price": "1799.00",
    "score": "0.71",
    "condition": "new",
    "quantity": "2",
    "min_order_qty": "1",
    "seller": "Apex Compute",
    "region": "US",
    "source_url": "https://example.com/listing/1",
    "source_type": "marketplace",
    "seen_at": "2025-03-01T10:00:00Z",
    "generation": "Ada Lovelace",
    "cuda_cores": "16384",
    "slot_width": "3",
    "pcie_generation": "4",
    "form_factor": "PCIe",
    "notes": "",
    "warnings": "",
    "title": "NVIDIA GeForce RTX 4090 24GB - New",
}


def row(**changes) -> Dict[str, str]:
    """A valid row with some values changed."""
    values = dict(GOOD_ROW)
    values.update(changes)
    return values


def csv_text(rows: List[Dict[str, str]], header: Optional[List[str]] = None, delimiter: str = ",") -> str:
    """CSV text (header first, CRLF line ends) of ``rows``, each a dict over ``header``."""
    header = header or HEADER
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    for r in rows:
        writer.writerow([r.get(name, "") for name in header])
    return out.getvalue()


def csv_bytes(rows: List[Dict[str, str]], header: Optional[List[str]] = None, delimiter: str = ",") -> bytes:
    return csv_text(rows, header, delimiter).encode("utf-8")


GOOD_CSV = csv_bytes([row(), row(canonical_model="H100_PCIE_80GB", vram_gb="80", price="24500.50")])


@dataclass
class Case:
    id: str
    method: str
    path: str
    body: bytes = b""
    headers: Dict[str, str] = field(default_factory=dict)
    status: int = 400
    # The plugin's JSON error answer, ``{"ok": false, "errors": [...]}``: the exact messages (for an import,
    # each error's "message"); None where the answer is not the plugin's (Datasette's own views).
    messages: Optional[List[str]] = None


def upload(
    id: str,
    content: bytes,
    status: int,
    messages: Optional[List[str]],
    filename: str = "listings.csv",
    content_type: str = "text/csv",
) -> Case:
    """A multipart upload of ``content`` as the field ``file``, as a browser or ``curl -F`` sends it."""
    head, tail, header = multipart_envelope("file", filename, {}, content_type)
    return Case(id, "POST", "/api/import", head + content + tail, {"Content-Type": header}, status, messages)


def raw_post(id: str, body: bytes, content_type: Optional[str], status: int, messages: Optional[List[str]]) -> Case:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return Case(id, "POST", "/api/import", body, headers, status, messages)


def multipart(parts: List[bytes], boundary: str = "glyphboundary", closing: bool = True) -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return body + (b"--" + boundary.encode() + b"--\r\n" if closing else b"")


def file_part(content: bytes, filename: bytes = b"listings.csv", name: bytes = b"file") -> bytes:
    return (
        b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename + b'"\r\n'
        b"Content-Type: text/csv\r\n\r\n" + content
    )


def field_part(name: bytes, value: bytes) -> bytes:
    return b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value


MULTIPART = "multipart/form-data; boundary=glyphboundary"


def line_error(line: int, column: str, text: str) -> str:
    return f"Line {line}, column {column}: {text}"


def import_cases() -> List[Case]:
    """CSV files that must be refused with 422, each with the exact error messages."""
    many_good = [row(source_url=f"https://example.com/listing/{i}") for i in range(1, 1001)]
    latin1 = csv_text([row(), row(seller="Société Générale Matériel")]).encode("latin-1")
    utf8_then_bad = csv_bytes([row(), row()]) + b"RTX_4090,24,0,False,450,1799.00,0.71,new,2,1,Caf\xe9\r\n"
    missing_price = [h for h in HEADER if h != "price"]
    return [
        upload("zero-byte file", b"", 422, ["The file is empty (0 bytes); expected a CSV header and rows"]),
        upload("header only", csv_bytes([]), 422, ["The file has a header but no rows"]),
        upload(
            "blank lines only",
            b"\r\n\r\n\r\n",
            422,
            [
                "Line 1: the header is empty; expected column names such as "
                "canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score"
            ],
        ),
        upload(
            "required column missing",
            csv_bytes([row()], header=missing_price),
            422,
            ["Line 1: required column price is missing from the header"],
        ),
        upload(
            "column twice in the header",
            csv_bytes([dict(row(), extra="1")], header=HEADER + ["price"]),
            422,
            ["Line 1: column price appears more than once in the header (fields 6 and 24)"],
        ),
        upload(
            "two byte order marks",
            codecs.BOM_UTF8 + codecs.BOM_UTF8 + GOOD_CSV,
            422,
            ["Line 1: required column canonical_model is missing from the header"],
        ),
        upload(
            "no header (data first)",
            GOOD_CSV.split(b"\r\n", 1)[1],
            422,
            # the data row's empty notes and warnings read as two nameless columns
            [
                f"Line 1: column {n} of the header has no name; name every column (or remove the empty ones)"
                for n in (21, 22)
            ]
            + [f"Line 1: required column {c} is missing from the header" for c in HEADER[:7]],
        ),
        upload(
            "tab separated",
            csv_bytes([row()], delimiter="\t"),
            422,
            ["Line 1: the header uses tabs between names; save the file with commas"],
        ),
        upload(
            "semicolon separated",
            csv_bytes([row()], delimiter=";"),
            422,
            ["Line 1: the header uses ';' between names; save the file with commas"],
        ),
        upload(
            "too many fields",
            csv_bytes([row(), row()]) + b"RTX_4090,24,0,False,450,1799.00,0.71" + b",x" * 17 + b"\r\n",
            422,
            ["Line 4: expected 23 fields as in the header, found 24"],
        ),
        upload(
            "too few fields",
            csv_bytes([row()]) + b"RTX_4090,24,0,False,450,1799.00,0.71\r\n",
            422,
            ["Line 3: expected 23 fields as in the header, found 7"],
        ),
        upload(
            "100,000 fields in a row",
            csv_bytes([row()]) + b"x," * 100_000 + b"x\r\n",
            422,
            ["Line 3: expected 23 fields as in the header, found 100001"],
        ),
        upload(
            "unterminated quote",
            csv_bytes([row()]) + b'RTX_4090,24,0,False,450,1799.00,0.71,new,2,1,"Apex Compute\r\n',
            422,
            ["Line 3: malformed CSV: a quoted field is still open at the end of the file"],
        ),
        upload(
            "text after a closing quote",
            csv_bytes([row()]) + b'RTX_4090,24,0,False,450,1799.00,0.71,new,2,1,"Apex"Compute' + b",x" * 12 + b"\r\n",
            422,
            ["Line 3: malformed CSV: a closing quote must be followed by a comma or the end of the line"],
        ),
        upload("price is text", csv_bytes([row(price="abc")]), 422, [line_error(2, "price", "'abc' is not a number")]),
        upload(
            "price is negative",
            csv_bytes([row(), row(price="-1")]),
            422,
            [line_error(3, "price", "'-1' is negative; price must be >= 0")],
        ),
        upload(
            "price is NaN", csv_bytes([row(price="NaN")]), 422, [line_error(2, "price", "'NaN' is not a finite number")]
        ),
        upload(
            "price is 1e999",
            csv_bytes([row(price="1e999")]),
            422,
            [line_error(2, "price", "'1e999' is not a finite number")],
        ),
        upload(
            "formula in a number column",
            csv_bytes([row(price="=1+1")]),
            422,
            [line_error(2, "price", "'=1+1' is not a number")],
        ),
        upload(
            "NUL byte in a number",
            csv_bytes([row(price="12\x003")]),
            422,
            [line_error(2, "price", "'12\\x003' is not a number; it contains \\x00 (NUL, a zero byte)")],
        ),
        upload(
            "vram_gb is a fraction",
            csv_bytes([row(vram_gb="24.5")]),
            422,
            [line_error(2, "vram_gb", "'24.5' is not an integer")],
        ),
        upload(
            "vram_gb is empty", csv_bytes([row(vram_gb="")]), 422, [line_error(2, "vram_gb", "a value is required")]
        ),
        upload(
            "vram_gb is blank",
            csv_bytes([row(vram_gb="  ")]),
            422,
            [line_error(2, "vram_gb", "a value is required, found '  '")],
        ),
        upload(
            "tdp_watts in hex",
            csv_bytes([row(tdp_watts="0x1C2")]),
            422,
            [line_error(2, "tdp_watts", "'0x1C2' is not an integer")],
        ),
        upload(
            "canonical_model is empty",
            csv_bytes([row(canonical_model="")]),
            422,
            [line_error(2, "canonical_model", "a value is required")],
        ),
        upload(
            "canonical_model not UPPER_SNAKE",
            csv_bytes([row(canonical_model="rtx 4090")]),
            422,
            [line_error(2, "canonical_model", "'rtx 4090' is not an UPPER_SNAKE model id such as H100_PCIE_80GB")],
        ),
        upload(
            "SQL in canonical_model",
            csv_bytes([row(canonical_model="RTX_4090'; DROP TABLE scored_listings; --")]),
            422,
            [
                line_error(
                    2,
                    "canonical_model",
                    "'RTX_4090'; DROP TABLE scored_listings; --' is not an UPPER_SNAKE model id such as H100_PCIE_80GB",
                )
            ],
        ),
        upload(
            "nvlink is not a boolean",
            csv_bytes([row(nvlink="maybe")]),
            422,
            [line_error(2, "nvlink", "'maybe' is not a boolean (use True/False, true/false, 1/0 or yes/no)")],
        ),
        upload(
            "mig_support is a word",
            csv_bytes([row(mig_support="eight")]),
            422,
            [line_error(2, "mig_support", "'eight' is not an integer")],
        ),
        upload(
            "score is a word", csv_bytes([row(score="high")]), 422, [line_error(2, "score", "'high' is not a number")]
        ),
        upload(
            "optional integer is a word",
            csv_bytes([row(quantity="many")]),
            422,
            [line_error(2, "quantity", "'many' is not an integer")],
        ),
        upload(
            "seen_at is not a timestamp",
            csv_bytes([row(seen_at="yesterday")]),
            422,
            [line_error(2, "seen_at", "'yesterday' is not an ISO 8601 timestamp such as 2025-04-19T06:25:43Z")],
        ),
        upload(
            "last of 1,001 rows is bad",
            csv_bytes(many_good + [row(score="")]),
            422,
            [line_error(1002, "score", "a value is required")],
        ),
        upload(
            "60 bad rows: 50 errors listed",
            csv_bytes([row(price=f"x{i}") for i in range(60)]),
            422,
            [line_error(i + 2, "price", f"'x{i}' is not a number") for i in range(50)],
        ),
        upload(
            "UTF-16 with byte order mark",
            csv_text([row()]).encode("utf-16"),
            422,
            ["Line 1: this is not a CSV file; it starts like UTF-16 text; save it as UTF-8"],
        ),
        upload(
            "UTF-16 without byte order mark",
            csv_text([row()]).encode("utf-16-le"),
            422,
            ["Line 1: this is not a CSV file; it starts like binary data"],
        ),
        upload(
            "Latin-1",
            latin1,
            422,
            [
                "Line 3: not valid UTF-8 (byte e9 at byte offset "
                f"{latin1.index(b'Soci') + 4} of the file); save the file as UTF-8"
            ],
        ),
        upload(
            "invalid UTF-8 after good rows",
            utf8_then_bad,
            422,
            [
                "Line 4: not valid UTF-8 (byte e9 at byte offset "
                f"{utf8_then_bad.index(b'Caf') + 3} of the file); save the file as UTF-8"
            ],
        ),
        upload(
            "1.5 MB seller",
            csv_bytes([row(seller="s" * 1_500_000)]),
            422,
            [line_error(2, "seller", "the value is 1,500,000 characters long; seller takes at most 1,000")],
        ),
        upload(
            "3 MB line",
            csv_bytes([row()]) + b"x" * 3_000_000 + b"\r\n",
            422,
            ["Line 3: expected 23 fields as in the header, found 1"],
        ),
        upload(
            "model id of 1,000,000 characters",
            csv_bytes([row(canonical_model="A" * 1_000_000)]),
            422,
            [
                line_error(
                    2, "canonical_model", "the value is 1,000,000 characters long; canonical_model takes at most 100"
                )
            ],
        ),
        upload(
            "digits with an underscore",
            csv_bytes([row(vram_gb="2_4")]),
            422,
            [line_error(2, "vram_gb", "'2_4' is not an integer (digits 0-9 only)")],
        ),
        upload(
            "full-width digits",
            csv_bytes([row(tdp_watts="４５０")]),
            422,
            [
                line_error(
                    2,
                    "tdp_watts",
                    "'\\uff14\\uff15\\uff10' is not an integer (digits 0-9 only); "
                    "it contains \\uff14 (FULLWIDTH DIGIT FOUR), "
                    "\\uff15 (FULLWIDTH DIGIT FIVE), \\uff10 (FULLWIDTH DIGIT ZERO)",
                )
            ],
        ),
        upload(
            "price with an underscore",
            csv_bytes([row(price="1_000.5")]),
            422,
            [line_error(2, "price", "'1_000.5' is not a number (digits 0-9, a point and an exponent only)")],
        ),
        upload(
            "Cyrillic letter in a model id",
            csv_bytes([row(canonical_model="Н100_PCIE_80GB")]),
            422,
            [
                line_error(
                    2,
                    "canonical_model",
                    "'\\u041d100_PCIE_80GB' is not an UPPER_SNAKE model id such as H100_PCIE_80GB; "
                    "it contains \\u041d (CYRILLIC CAPITAL LETTER EN)",
                )
            ],
        ),
        upload(
            "month 13 and hour 99",
            csv_bytes([row(seen_at="2025-13-45T99:99:99Z")]),
            422,
            [
                line_error(
                    2, "seen_at", "'2025-13-45T99:99:99Z' is not an ISO 8601 timestamp such as 2025-04-19T06:25:43Z"
                )
            ],
        ),
        upload(
            "February 30",
            csv_bytes([row(seen_at="2025-02-30T10:00:00Z")]),
            422,
            [line_error(2, "seen_at", "'2025-02-30T10:00:00Z' is not a real calendar date")],
        ),
        upload(
            "two empty header columns",
            csv_text([row()], HEADER + ["", ""]).encode(),
            422,
            [
                f"Line 1: column {n} of the header has no name; name every column (or remove the empty ones)"
                for n in (24, 25)
            ],
        ),
        upload(
            "PNG image",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
            422,
            ["Line 1: not valid UTF-8 (byte 89 at byte offset 0 of the file); save the file as UTF-8"],
        ),
        upload(
            "gzipped CSV",
            gzip.compress(GOOD_CSV, mtime=0),
            422,
            ["Line 1: this is not a CSV file; it starts like binary data"],
        ),
        upload(
            "JSON file",
            json.dumps([GOOD_ROW]).encode(),
            422,
            ["Line 1: this is not a CSV file; it starts like JSON"],
        ),
        upload(
            "HTML page",
            b"<!doctype html><html><body>Not found</body></html>\n",
            422,
            ["Line 1: this is not a CSV file; it starts like HTML or XML"],
        ),
    ]


def request_cases() -> List[Case]:
    """Requests to POST /api/import that are not a usable upload at all."""
    over = MAX_UPLOAD_BYTES + 1
    return [
        Case(
            "truncated multipart",
            "POST",
            "/api/import",
            multipart([file_part(GOOD_CSV)], closing=False)[:-50],
            {"Content-Type": MULTIPART},
            400,
            ["The multipart body is truncated: it ends before its closing boundary"],
        ),
        Case(
            "multipart without a file field",
            "POST",
            "/api/import",
            multipart([field_part(b"source", b"broker")]),
            {"Content-Type": MULTIPART},
            400,
            ["The multipart body has no 'file' field; send the CSV file as 'file'"],
        ),
        Case(
            "two files in one request",
            "POST",
            "/api/import",
            multipart([file_part(GOOD_CSV), file_part(GOOD_CSV)]),
            {"Content-Type": MULTIPART},
            400,
            ["Send one file per request: the body has more than one 'file' part"],
        ),
        Case(
            "part without a name",
            "POST",
            "/api/import",
            multipart([b"Content-Disposition: form-data\r\n\r\nvalue", file_part(GOOD_CSV)]),
            {"Content-Type": MULTIPART},
            400,
            ["Malformed multipart body: a part has no Content-Disposition: form-data name"],
        ),
        Case(
            "multipart without a boundary",
            "POST",
            "/api/import",
            multipart([file_part(GOOD_CSV)]),
            {"Content-Type": "multipart/form-data"},
            400,
            ["Content-Type must be multipart/form-data with a boundary"],
        ),
        Case(
            "boundary does not match the body",
            "POST",
            "/api/import",
            multipart([file_part(GOOD_CSV)], boundary="otherboundary"),
            {"Content-Type": MULTIPART},
            400,
            ["Malformed multipart body: it does not follow the boundary given in Content-Type"],
        ),
        Case(
            "empty multipart body",
            "POST",
            "/api/import",
            b"",
            {"Content-Type": MULTIPART},
            400,
            ["The request body is empty; send the file as the multipart field 'file'"],
        ),
        Case(
            "source field over 64 KB",
            "POST",
            "/api/import",
            multipart([field_part(b"source", b"s" * 70_000), file_part(GOOD_CSV)]),
            {"Content-Type": MULTIPART},
            400,
            ["The form field 'source' is over 65,536 bytes"],
        ),
        Case(
            "form field not UTF-8",
            "POST",
            "/api/import",
            multipart([field_part(b"description", b"caf\xe9"), file_part(GOOD_CSV)]),
            {"Content-Type": MULTIPART},
            400,
            ["The form field 'description' is not UTF-8 text"],
        ),
        raw_post(
            "raw CSV body as text/csv",
            GOOD_CSV,
            "text/csv",
            400,
            [
                "Send multipart/form-data with the CSV file as the field 'file', or application/json; "
                "got Content-Type 'text/csv'"
            ],
        ),
        raw_post(
            "urlencoded form",
            b"file=" + quote(GOOD_CSV).encode(),
            "application/x-www-form-urlencoded",
            400,
            [
                "Send multipart/form-data with the CSV file as the field 'file', or application/json; "
                "got Content-Type 'application/x-www-form-urlencoded'"
            ],
        ),
        raw_post(
            "no Content-Type",
            GOOD_CSV,
            None,
            400,
            [
                "Send multipart/form-data with the CSV file as the field 'file', or application/json; "
                "got no Content-Type"
            ],
        ),
        raw_post(
            "JSON that does not parse",
            b'[{"canonical_model": "RTX_4090",',
            "application/json",
            400,
            ["The request body is not valid JSON: the body ends before the JSON does"],
        ),
        raw_post(
            "JSON object instead of a list",
            json.dumps(GOOD_ROW).encode(),
            "application/json",
            400,
            ["Send a JSON array of listing objects, not an object"],
        ),
        raw_post("JSON empty list", b"[]", "application/json", 422, ["No records to import: the list is empty"]),
        raw_post(
            "JSON lone surrogate",
            json.dumps([GOOD_ROW, dict(GOOD_ROW, seller="Apex \ud800")]).encode(),
            "application/json",
            422,
            [
                "Record 2, column seller: 'Apex \\ud800' is not text; "
                "it contains \\ud800 (a lone surrogate, which is not a character)"
            ],
        ),
        raw_post(
            "JSON nested 200,000 deep",
            b"[" + b'{"a":' * 200_000 + b"1" + b"}" * 200_000 + b"]",
            "application/json",
            400,
            [
                "The request body nests arrays and objects more than 64 levels deep; "
                "send an array of listing objects whose values are single values"
            ],
        ),
        raw_post(
            "JSON model id of 2,000,000 characters",
            json.dumps([dict(GOOD_ROW, canonical_model="A" * 2_000_000)]).encode(),
            "application/json",
            422,
            [
                "Record 1, column canonical_model: the value is 2,000,000 characters long; "
                "canonical_model takes at most 100"
            ],
        ),
        raw_post(
            "JSON with full-width digits",
            json.dumps([dict(GOOD_ROW, vram_gb="２４")]).encode(),
            "application/json",
            422,
            [
                "Record 1, column vram_gb: '\\uff12\\uff14' is not an integer (digits 0-9 only); "
                "it contains \\uff12 (FULLWIDTH DIGIT TWO), \\uff14 (FULLWIDTH DIGIT FOUR)"
            ],
        ),
        raw_post(
            "JSON value that is an object",
            json.dumps([dict(GOOD_ROW, price={"usd": 1})]).encode(),
            "application/json",
            422,
            ["Record 1, column price: '{…}' is an object, not a single value"],
        ),
        Case(
            "multipart with 17 text fields",
            "POST",
            "/api/import",
            multipart([field_part(b"f%d" % i, b"x") for i in range(17)] + [file_part(GOOD_CSV)]),
            {"Content-Type": MULTIPART},
            400,
            ["The form has more than 16 text fields"],
        ),
        raw_post(
            "JSON record with a bad price",
            json.dumps([GOOD_ROW, dict(GOOD_ROW, price="abc")]).encode(),
            "application/json",
            422,
            ["Record 2, column price: 'abc' is not a number"],
        ),
        Case(
            "declared size over the limit",
            "POST",
            "/api/import",
            b"x" * 100,
            {"Content-Type": MULTIPART, "Content-Length": str(over)},
            413,
            [f"The request body is {over:,} bytes; the limit is {MAX_UPLOAD_BYTES:,} bytes"],
        ),
        Case(
            "streamed body over the limit",
            "POST",
            "/api/import",
            multipart([file_part(b"x" * over)]),
            {"Content-Type": MULTIPART, "Transfer-Encoding": "chunked"},
            413,
            [f"The request body is over the limit of {MAX_UPLOAD_BYTES:,} bytes"],
        ),
        Case(
            "file name of 10,000 characters",
            "POST",
            "/api/import",
            multipart([file_part(GOOD_CSV, filename=b"l" * 10_000 + b".csv")]),
            {"Content-Type": MULTIPART},
            400,
            None,  # refused by the multipart parser's header limit (its message is about the boundary)
        ),
        Case(
            "GET on the import endpoint",
            "GET",
            "/api/import",
            status=405,
            messages=["GET is not allowed here; use POST"],
        ),
    ]


# Payloads that mean something to SQL, LIKE or a shell: each must be taken as plain text.
SQL_METACHARACTERS = [
    "' OR '1'='1",
    "1; DROP TABLE scored_listings; --",
    '" OR ""="',
    "%",
    "\\",
    "1) OR (1=1",
    "' UNION SELECT sql, 1, 1, 1, 1, 1, 1 FROM sqlite_master --",
    "*",
    "$(reboot)",
]


def _param(name: str, value: str) -> str:
    return f"{name}={quote(value, safe='')}"


def query_cases() -> List[Case]:
    """Absurd and hostile query parameters for GET /api/listings and Datasette's JSON table view."""

    def listings(id, query, status, messages):
        return Case(id, "GET", "/api/listings?" + query, status=status, messages=messages)

    def must_be(name, value, text):
        return f"{name}: {text} (got {value!r})"

    cases = [
        listings("limit=1e999", "limit=1e999", 422, [must_be("limit", "1e999", "must be an integer")]),
        listings("limit=0", "limit=0", 422, [must_be("limit", "0", "must be between 1 and 1000")]),
        listings("limit=1001", "limit=1001", 422, [must_be("limit", "1001", "must be between 1 and 1000")]),
        listings("limit=-1", "limit=-1", 422, [must_be("limit", "-1", "must be between 1 and 1000")]),
        listings(
            "limit of 10 KB digits", "limit=" + "9" * 10240, 422, [must_be("limit", "9" * 10240, "must be an integer")]
        ),
        listings("offset=-1", "offset=-1", 422, [must_be("offset", "-1", "must be >= 0")]),
        listings("offset=1.5", "offset=1.5", 422, [must_be("offset", "1.5", "must be an integer")]),
        listings("min_price=abc", "min_price=abc", 422, [must_be("min_price", "abc", "must be a number")]),
        listings("min_price=-1", "min_price=-1", 422, [must_be("min_price", "-1", "must be >= 0")]),
        listings("min_price=nan", "min_price=nan", 422, [must_be("min_price", "nan", "must be a finite number")]),
        listings("max_price=1e999", "max_price=1e999", 422, [must_be("max_price", "1e999", "must be a finite number")]),
        listings(
            "min_price above max_price",
            "min_price=10&max_price=5",
            400,
            ["min_price (10) is greater than max_price (5)"],
        ),
        listings("unicode model", _param("model", "日本語🚀"), 200, []),
        listings("unicode import_id", _param("import_id", "ünïcödé"), 200, []),
        listings("10 KB model", "model=" + "A" * 10240, 200, []),
        listings("10 KB import_id", "import_id=" + "x" * 10240, 200, []),
    ]
    # 200 with no rows: the value was compared as text, not run. 422: refused as a number.
    for value in SQL_METACHARACTERS:
        cases.append(listings(f"model={value}", _param("model", value), 200, []))
        cases.append(listings(f"import_id={value}", _param("import_id", value), 200, []))
        for name in ("min_price", "max_price"):
            cases.append(
                listings(f"{name}={value}", _param(name, value), 422, [must_be(name, value, "must be a number")])
            )
        for name in ("limit", "offset"):
            cases.append(
                listings(f"{name}={value}", _param(name, value), 422, [must_be(name, value, "must be an integer")])
            )
    # Datasette's own JSON view of the table: the same values in its filters (status only: its messages
    # are Datasette's and differ between versions). Filters by value answer 200 with no rows.
    for value in SQL_METACHARACTERS:
        for column in ("canonical_model", "import_id", "seller"):
            cases.append(
                Case(
                    f"table view {column}={value}",
                    "GET",
                    f"/glyph/scored_listings.json?_shape=array&{_param(column, value)}",
                    status=200,
                    messages=[],
                )
            )
        cases.append(
            Case(
                f"table view price__gt={value}",
                "GET",
                f"/glyph/scored_listings.json?_shape=array&{_param('price__gt', value)}",
                status=200,
                messages=[],
            )
        )
    for query in ("_size=1e999", "_size=-1", "_size=" + "9" * 10240):
        cases.append(Case(f"table view {query[:20]}", "GET", f"/glyph/scored_listings.json?{query}", status=400))
    return cases


def all_cases() -> List[Case]:
    cases = import_cases() + request_cases() + query_cases()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return cases
