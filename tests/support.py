"""Helpers shared by the test modules (no fixtures here: those are in conftest.py).

A test module imports from here, from server.py, snapshots.py or locks.py, never from another test module.
"""

from __future__ import annotations

import re
import textwrap
from html import unescape


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
