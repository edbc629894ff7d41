"""Helpers shared by the test modules (fixtures are in conftest.py).

A test module imports from here, from server.py, snapshots.py, locks.py or hand_market.py, never from another
test module.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import textwrap
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import List

from click.testing import CliRunner
from datasette.cli import cli
from datasette.version import __version__ as datasette_version
from datasette_test import Datasette, actor_cookie
from packaging.version import parse

from datasette_glyph.engine.sqlite import connect

# In-process Datasette, the command line, checksums ---------------------------------------------------------------


async def make_ds(path, metadata=None, *, tokens=None, permissions=None, root=False, **config):
    """A Datasette serving the database at ``path``, started, with this plugin configured by ``config``.

    ``metadata``: Datasette metadata; ``tokens`` (token: actor): Bearer tokens for datasette-auth-tokens, the
    plugin the README recommends for API clients on 0.65; ``permissions``: Datasette's ``permissions:`` block
    (datasette-test stands in for it on 0.65); ``root``: what ``--root`` does on 1.0a (0.65 ignores it).
    """
    plugins = {"datasette-glyph": config}
    if tokens:
        plugins["datasette-auth-tokens"] = {"tokens": [{"token": t, "actor": a} for t, a in tokens.items()]}
    ds = Datasette([str(path)], plugin_config=plugins, metadata=metadata, permissions=permissions)
    if root:
        ds.root_enabled = True
    await ds.invoke_startup()
    return ds


def run_cli(*args, input=None, catch_exceptions=True):
    """``datasette ARGS...`` in this process (click's runner); every argument made a string."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=catch_exceptions)


def database_checksum(db) -> str:
    """SHA-256 of every table's schema and rows (SQLite's dump); ``db`` is a connection, or a database's path to
    read through a fresh connection."""
    if isinstance(db, sqlite3.Connection):
        return hashlib.sha256("\n".join(db.iterdump()).encode("utf-8")).hexdigest()
    conn = sqlite3.connect(db)
    try:
        return database_checksum(conn)
    finally:
        conn.close()


async def with_csrf_token(ds, cookies: dict, headers: dict) -> None:
    """On 0.65 a cookie-authenticated POST needs X-CSRFToken equal to the ds_csrftoken cookie: get one the way a
    browser does (any page that renders csrftoken()) and add both. 1.0a checks Origin / Sec-Fetch-Site instead."""
    if TOKEN_CSRF:
        page = await ds.client.get("/", cookies=cookies)
        cookies["ds_csrftoken"] = headers["x-csrftoken"] = page.cookies["ds_csrftoken"]


# Pages ----------------------------------------------------------------------------------------------------------


def error_message(html: str) -> str:
    """The message of a Datasette error page (its ``error.html``): the text of the box under the title."""
    found = re.findall(r'<div style="padding: 1em; margin: 1em 0; border: 3px solid red;">(.*?)</div>', html, re.S)
    assert len(found) == 1, html
    return unescape(re.sub(r"<[^>]+>", "", found[0])).strip()


def title(html: str) -> str:
    """The text of a page's first ``<h1>``."""
    found = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    assert found, html
    return " ".join(unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


def wait_until(predicate, what: str, timeout: float = 120, interval: float = 0.005):
    """Poll ``predicate`` until it returns something true, and return that; fail naming ``what`` if it never does
    within ``timeout`` seconds (a bound on a hung test, not a time the test depends on)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not seen within {timeout} s"
        time.sleep(interval)


# Fault injection for the server's own connections: a database that may not grow past its current size.
FULL_DISK_PLUGIN = textwrap.dedent("""
    from datasette import hookimpl

    @hookimpl
    def prepare_connection(conn):
        if conn.execute("PRAGMA database_list").fetchone()[2].endswith("glyph.db"):
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages + 20}")
    """)


CSV = (
    b"canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score,region\r\n"
    b"H100_PCIE_80GB,80,7,True,350,21000.0,0.81,US\r\n"
    b'A100_40GB_PCIE,40,7,True,250,6000.0,0.7,"EU, west"\r\n'
    b"RTX_4090,24,0,False,450,1500.0,0.5,\r\n"
)


BOUNDARY = "glyphboundary42"


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


# 0.65 protects cookie-authenticated POSTs with asgi-csrf tokens; 1.0a with the Origin / Sec-Fetch-Site headers
TOKEN_CSRF = parse(datasette_version) < parse("1.0a0")


def part(name, value: bytes, filename=None, content_type=None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    headers = f"Content-Disposition: {disposition}\r\n" + (f"Content-Type: {content_type}\r\n" if content_type else "")
    return f"--{BOUNDARY}\r\n{headers}\r\n".encode() + value + b"\r\n"


def multipart(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


UPLOAD = multipart(
    part("source", b"acme-broker"),
    part("file", CSV, filename="prices.csv", content_type="text/csv"),
    part("description", "nightly run \N{EM DASH} 3 rows".encode()),
)


def temp_files(folder: Path) -> list:
    """The upload temp files in an upload folder (they live in the server process's own folder inside it)."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def table_counts(db_path) -> tuple:
    """(import_batches, scored_listings, models) row counts: what an import would change."""
    conn = connect(db_path)
    try:
        return tuple(
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("import_batches", "scored_listings", "models")
        )
    finally:
        conn.close()


async def open_ds(db_path, upload_folder, **config):
    """``make_ds`` with imports allowed to everyone and uploads spooled in ``upload_folder``."""
    return await make_ds(db_path, **{"allow_import": True, "upload_dir": str(upload_folder), **config})


def make_csv(rows: int, seed: int = 0) -> bytes:
    """A valid scored listings CSV with ``rows`` rows; ``seed`` varies models and prices between files."""
    models = [("H100_PCIE_80GB", 80, 7, "True", 350), ("RTX_4090", 24, 0, "False", 450), ("L40S", 48, 0, "False", 350)]
    lines = ["canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score,source_url"]
    for i in range(rows):
        model, vram, mig, nvlink, tdp = models[(i + seed) % len(models)]
        lines.append(
            f"{model},{vram},{mig},{nvlink},{tdp},{1000 + seed * 10 + i % 997}.5,0.{i % 10},https://x/{seed}/{i}"
        )
    return ("\r\n".join(lines) + "\r\n").encode()


HEADER = "canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score"


def data(*lines: str, newline: str = "\n") -> bytes:
    return (newline.join(lines) + newline).encode("utf-8")


class Tables(HTMLParser):
    """The text of every cell of every table with an id, row by row: {id: [[cell, ...], ...]}."""

    def __init__(self, html):
        super().__init__()
        self.tables, self.table, self.cell = {}, None, None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id"):
            self.table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self.table is not None:
            self.table.append([])
        elif tag in ("td", "th") and self.table is not None:
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None
        elif tag in ("td", "th") and self.cell is not None:
            self.table[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def text_of(html, element_id):
    """The whitespace-normalised text of the element with ``element_id``."""
    match = re.search(rf'<(\w+)[^>]* id="{element_id}"[^>]*>(.*?)</\1>', html, re.DOTALL)
    return " ".join(re.sub(r"<[^>]+>", "", match.group(2)).split()).replace("&middot;", "·")


async def delete(ds, path, actor=None):
    """DELETE as a browser would: the actor cookie, and on 0.65 the CSRF token cookie echoed in a header."""
    if actor is None:
        return await ds.client.delete(path)
    cookies, headers = {"ds_actor": actor_cookie(ds, actor)}, {}
    await with_csrf_token(ds, cookies, headers)
    return await ds.client.delete(path, cookies=cookies, headers=headers)


def integrity(path: Path) -> List[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()
