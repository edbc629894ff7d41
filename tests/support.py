"""Helpers shared by the test modules (no fixtures here: those are in conftest.py).

A test module imports from here, from server.py, snapshots.py or locks.py, never from another test module.
"""

from __future__ import annotations

import re
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
