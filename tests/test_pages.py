"""The HTML pages under /-/glyph/ and the menu and table links to them, through Datasette's test client."""

import re
import sqlite3
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from datasette_test import Datasette, actor_cookie

from datasette_glyph import formats
from datasette_glyph.engine import lineage
from datasette_glyph.web import charts, imports

from . import support
from .snapshots import insert_snapshot
from .support import error_message, title

OPERATOR = {"id": "operator"}  # granted glyph-import by the plugin config below
READER = {"id": "reader"}
PLUGIN_CONFIG = {"datasette-glyph": {"database": "glyph", "allow_import": {"id": "operator"}}}

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
C = "cccccccc-0000-4000-8000-000000000003"
UNKNOWN = "dddddddd-0000-4000-8000-000000000004"

HOSTILE = "<script>alert(1)</script>"


def add_batch(conn, import_id, imported_at, rows=(), **fields):
    """A batch record and its scored_listings rows ((model, price, score), ...), numbered 1..n in order."""
    record = {"filename": None, "source": None, "description": None, "status": "complete", "actor": None, **fields}
    conn.execute(
        "INSERT INTO import_batches "
        "(import_id, imported_at, record_count, filename, source, description, status, actor)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [import_id, imported_at, len(rows), *record.values()],
    )
    for index, (model, price, score) in enumerate(rows, start=1):
        if not conn.execute("SELECT 1 FROM models WHERE model = ?", [model]).fetchone():
            conn.execute(
                "INSERT INTO models (model, import_id, import_index) VALUES (?, ?, ?)", [model, import_id, index]
            )
        conn.execute(
            "INSERT INTO scored_listings (canonical_model, price, vram_gb, tdp_watts, score, import_id, import_index)"
            " VALUES (?, ?, 80, 350, ?, ?, ?)",
            [model, price, score, import_id, index],
        )
    lineage.summarise_import(conn, import_id)


@pytest.fixture
def batches(conn):
    """Three batches: A and B from the same source (B newer), C with hostile text in every free-text field."""
    add_batch(
        conn,
        A,
        "2025-05-01 08:00:00",
        [("H100_PCIE_80GB", 25000.0, 0.5), ("RTX_4090", 1800.0, 0.75), ("H100_PCIE_80GB", 27000.0, 0.7)],
        filename="monday.csv",
        source="ebay",
        actor="operator",
    )
    add_batch(
        conn,
        B,
        "2025-05-02 08:00:00",
        [("RTX_4090", 1700.0, 0.8), ("RTX_4090", 1900.0, 0.6), ("RTX_4090", 2400.0, 0.4), ("L40S", 7999.99, 0.9)],
        filename="tuesday.csv",
        source="ebay",
    )
    add_batch(
        conn,
        C,
        "2025-05-03 08:00:00",
        [],
        filename=HOSTILE + ".csv",
        source=HOSTILE,
        description=HOSTILE,
        status="rolled_back",
        actor=HOSTILE,
    )


def make_ds(db_path, metadata=None):
    return support.make_ds(db_path, metadata, **PLUGIN_CONFIG["datasette-glyph"])


async def get(ds, path, actor=None):
    cookies = {"ds_actor": actor_cookie(ds, actor)} if actor else {}
    return await ds.client.get(path, cookies=cookies)


VOID = ("area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr")


class Extract(HTMLParser):
    """Text of the table cells, links and SVG texts inside the element with a given id or class."""

    def __init__(self, html, id=None, class_=None):
        super().__init__(convert_charrefs=True)
        self.want_id, self.want_class = id, class_
        self.depth = 0  # > 0 while inside the wanted element
        self.rows, self.links, self.texts = [], [], []
        self._cell = self._link = self._text = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if not self.depth:
            if (self.want_id and attrs.get("id") == self.want_id) or (
                self.want_class and self.want_class in (attrs.get("class") or "").split()
            ):
                self.depth = 1
            return
        self.depth += tag not in VOID
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "a":
            self._link = [attrs.get("href"), ""]
        elif tag == "text":
            self._text = ""

    def handle_endtag(self, tag):
        if not self.depth or tag in VOID:
            return
        self.depth -= 1
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell.strip())
            self._cell = None
        elif tag == "a" and self._link is not None:
            self.links.append((self._link[0], self._link[1].strip()))
            self._link = None
        elif tag == "text" and self._text is not None:
            self.texts.append(self._text.strip())
            self._text = None

    def handle_data(self, data):
        if not self.depth:
            return
        for name in ("_cell", "_text"):
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name) + data)
        if self._link is not None:
            self._link[1] += data


def rows_link(import_id, **filters):
    query = "".join(f"&{k}={v}" for k, v in filters.items())
    return f"/glyph/scored_listings?import_id={import_id}{query}&_sort=import_index&_nosuggest=1"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path,actor,status,text",
    [
        ("/-/glyph/import", None, 403, "You do not have permission to import listings (glyph-import)"),
        ("/-/glyph/import", READER, 403, "You do not have permission to import listings (glyph-import)"),
        ("/-/glyph/import", OPERATOR, 200, "Import listings"),
        ("/-/glyph/imports", None, 200, "Imports"),
        ("/-/glyph/imports", OPERATOR, 200, "Imports"),
        ("/-/glyph/imports?page=1", None, 200, "Imports"),
        ("/-/glyph/imports?page=2", None, 404, "There is no page 2 of imports; there are 1"),
        ("/-/glyph/imports?page=0", None, 400, "page must be a whole number from 1 up, not '0'"),
        ("/-/glyph/imports?page=two", None, 400, "page must be a whole number from 1 up, not 'two'"),
        (
            "/-/glyph/imports?page=%C2%B2",
            None,
            400,
            "page must be a whole number from 1 up, not '²'",
        ),  # ² is a digit to str.isdigit, not to int()
        ("/-/glyph/imports?page=%D9%A3", None, 400, "page must be a whole number from 1 up, not '٣'"),  # Arabic-Indic 3
        (
            "/-/glyph/imports?page=99999999999999999999",
            None,
            404,
            "There is no page 99999999999999999999 of imports",
        ),
        (
            "/-/glyph/imports?page=184467440737095517",
            None,
            404,
            "There is no page 184467440737095517 of imports",
        ),  # its offset just past 64 bits
        (f"/-/glyph/imports/{A}", None, 200, "Import: monday.csv"),
        (f"/-/glyph/imports/{C}", None, 200, "Import: <script>alert(1)</script>.csv"),
        (f"/-/glyph/imports/{UNKNOWN}", None, 404, f"No import with id {UNKNOWN}"),
        (f"/-/glyph/imports/{UNKNOWN}", OPERATOR, 404, f"No import with id {UNKNOWN}"),
    ],
)
async def test_status_codes(db_path, batches, path, actor, status, text):
    """Each page's status, with its title when it is served and the error's whole message when it is not."""
    ds = await make_ds(db_path)
    response = await get(ds, path, actor)
    shown = error_message(response.text) if status >= 400 else title(response.text)
    assert (response.status_code, shown) == (status, text)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    ["/-/glyph/imports", f"/-/glyph/imports/{A}"],
)
@pytest.mark.parametrize("actor,status", [(None, 403), (READER, 403), (OPERATOR, 200)])
async def test_batch_pages_need_view_permission(db_path, batches, path, actor, status):
    ds = await make_ds(db_path, metadata={"databases": {"glyph": {"allow": {"id": "operator"}}}})
    response = await get(ds, path, actor)
    if status == 403:
        shown = error_message(response.text)
        expected = "You do not have permission to view the imports of glyph"
    else:
        shown, expected = title(response.text), ("Imports" if path.endswith("imports") else "Import: monday.csv")
    assert (response.status_code, shown) == (status, expected)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "actor,metadata,expected",
    [
        (None, None, [("/-/glyph/imports", "Imports")]),
        (READER, None, [("/-/glyph/imports", "Imports")]),
        (OPERATOR, None, [("/-/glyph/imports", "Imports"), ("/-/glyph/import", "Import listings")]),
        # the imports list only for those who may see the tables it shows
        (None, {"databases": {"glyph": {"allow": {"id": "operator"}}}}, []),
        (
            OPERATOR,
            {"databases": {"glyph": {"allow": {"id": "operator"}}}},
            [("/-/glyph/imports", "Imports"), ("/-/glyph/import", "Import listings")],
        ),
    ],
)
async def test_menu_links(db_path, actor, metadata, expected):
    ds = await make_ds(db_path, metadata=metadata)
    response = await get(ds, "/", actor)
    assert response.status_code == 200
    links = Extract(response.text, class_="nav-menu-inner").links
    assert [link for link in links if link[0].startswith("/-/glyph")] == expected


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "table,actor,expected",
    [
        ("scored_listings", None, [("/-/glyph/imports", "Browse import batches")]),
        (
            "scored_listings",
            OPERATOR,
            [("/-/glyph/import", "Import listings"), ("/-/glyph/imports", "Browse import batches")],
        ),
        ("import_batches", OPERATOR, [("/-/glyph/imports", "Browse import batches")]),
        ("models", OPERATOR, []),
    ],
)
async def test_table_actions(db_path, table, actor, expected):
    ds = await make_ds(db_path)
    response = await get(ds, f"/glyph/{table}", actor)
    assert response.status_code == 200
    links = Extract(response.text, class_="actions-menu-links").links
    assert [link for link in links if link[0].startswith("/-/glyph")] == expected


@pytest.mark.asyncio
async def test_upload_page_posts_to_the_api_with_the_csrf_token(db_path):
    ds = await make_ds(db_path)
    response = await get(ds, "/-/glyph/import", OPERATOR)
    html = response.text
    assert re.findall(r"var apiUrl = (.*);", html) == ['"/api/import"']
    assert re.findall(r'xhr.setRequestHeader\("X-CSRFToken", (\w+)\)', html) == ["csrfToken"]
    token = re.findall(r"var csrfToken = (.*);", html)
    assert len(token) == 1 and len(token[0]) > 10
    assert re.findall(r'<input type="file" id="glyph-file" name="(\w+)"', html) == ["file"]


@pytest.mark.asyncio
async def test_imports_list_newest_first(db_path, batches):
    ds = await make_ds(db_path)
    response = await get(ds, "/-/glyph/imports")
    table = Extract(response.text, id="glyph-imports")
    escaped_file = "&lt;script&gt;alert(1)&lt;/script&gt;.csv"
    assert table.rows == [
        ["File", "Source", "Imported at", "Rows", "Status", "Actor", "Original file"],
        [HOSTILE + ".csv", HOSTILE, "2025-05-03 08:00:00 UTC", "0", "rolled_back", HOSTILE, "not kept"],
        ["tuesday.csv", "ebay", "2025-05-02 08:00:00 UTC", "4", "complete", "", "not kept"],
        ["monday.csv", "ebay", "2025-05-01 08:00:00 UTC", "3", "complete", "operator", "not kept"],
    ]
    assert table.links == [
        (f"/-/glyph/imports/{C}", HOSTILE + ".csv"),
        (f"/-/glyph/imports/{B}", "tuesday.csv"),
        (rows_link(B), "4"),
        (f"/-/glyph/imports/{A}", "monday.csv"),
        (rows_link(A), "3"),
    ]
    first_cell = re.findall(rf'<tr data-import-id="{C}">\s*<td data-label="File">(.*?)</td>', response.text)
    assert first_cell == [f'<a href="/-/glyph/imports/{C}">{escaped_file}</a>']


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/-/glyph/imports", f"/-/glyph/imports/{C}"])
async def test_user_text_is_escaped(db_path, batches, path):
    ds = await make_ds(db_path)
    html = (await get(ds, path)).text
    assert html.count("<script>alert(1)") == 0
    expected = {"/-/glyph/imports": 3, f"/-/glyph/imports/{C}": 6}[path]  # list: file, source, actor
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == expected


@pytest.mark.asyncio
async def test_imports_list_pages(conn, db_path):
    for i in range(imports.IMPORTS_PER_PAGE + 1):
        add_batch(
            conn, f"00000000-0000-4000-8000-{i:012d}", f"2025-01-01 00:{i // 60:02d}:{i % 60:02d}", filename=f"{i}.csv"
        )
    ds = await make_ds(db_path)
    first = Extract((await get(ds, "/-/glyph/imports")).text, id="glyph-imports").rows[1:]
    second_html = (await get(ds, "/-/glyph/imports?page=2")).text
    second = Extract(second_html, id="glyph-imports").rows[1:]
    assert [row[0] for row in first] == [f"{i}.csv" for i in range(imports.IMPORTS_PER_PAGE, 0, -1)]
    assert [row[0] for row in second] == ["0.csv"]
    assert Extract(second_html, class_="glyph-pages").links == [("/-/glyph/imports", "← Newer")]


@pytest.mark.asyncio
async def test_batch_page(db_path, batches):
    ds = await make_ds(db_path)
    response = await get(ds, f"/-/glyph/imports/{B}")
    html = response.text
    assert Extract(html, id="glyph-model-summary").rows == [
        ["Model", "Rows", "Min price", "Median price", "Max price", "Mean score"],
        ["L40S", "1", "$7,999.99", "$7,999.99", "$7,999.99", "0.9000"],
        ["RTX_4090", "3", "$1,700.00", "$1,900.00", "$2,400.00", "0.6000"],
    ]
    assert Extract(html, id="glyph-model-summary").links == [
        (rows_link(B, canonical_model="L40S"), "L40S"),
        (rows_link(B, canonical_model="RTX_4090"), "RTX_4090"),
    ]
    record = re.findall(r"<dt>(.*?)</dt>\s*<dd>(.*?)</dd>", html)
    assert [(label, re.sub("<[^>]+>", "", value)) for label, value in record] == [
        ("Import id", B),
        ("File", "tuesday.csv"),
        ("Source", "ebay"),
        ("Status", "complete"),
        ("Rows", "4"),
        ("Imported at", "2025-05-02 08:00:00 UTC"),
    ]
    # The exact moment, in the form a point-in-time restore takes, as /api/imports/<id> gives it
    restore_point = re.search(r'<p id="glyph-restore-point">(.*?)</p>', html, re.S).group(1)
    assert (
        re.sub(r"<[^>]+>|\s+", " ", restore_point).split()
        == (
            "To restore the database as it was just before this import: "
            "litestream restore -timestamp 2025-05-02T08:00:00Z"
        ).split()
    )
    assert (await get(ds, f"/api/imports/{B}")).json()["imported_at"] == "2025-05-02T08:00:00Z"
    assert Extract(html, class_="glyph-links").links == [
        (rows_link(B), "Browse its 4 rows"),
        (f"/glyph/import_batches?import_id={B}&_nosuggest=1", "its import_batches record"),
        (f"/-/glyph/imports/{A}/diff/{B}", "compare with previous import from the same source"),
        ("/-/glyph/imports", "all imports"),
        (f"/api/imports/{B}", "JSON"),
    ]
    statuses = [(await get(ds, href)).status_code for href, _ in Extract(html, class_="glyph-links").links]
    assert statuses == [200] * 5
    # Most expensive first, on a log axis from $1k to $10k drawn above and below the bars.
    assert chart_ticks(html) == [("0.0", "$1k"), ("47.71", "$3k"), ("100.0", "$10k")] * 2
    assert chart_rows(html) == [
        ("L40S", "median $8,000 · 1 row", "90.31", "90.31", "0.0"),
        ("RTX_4090", "median $1,900 · 3 rows", "27.88", "23.04", "14.98"),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "import_id,expected",
    [
        (B, [(f"/-/glyph/imports/{A}/diff/{B}", "compare with previous import from the same source")]),
        (A, []),
        (C, []),
    ],
)
async def test_compare_with_previous_link(db_path, batches, import_id, expected):
    ds = await make_ds(db_path)
    html = (await get(ds, f"/-/glyph/imports/{import_id}")).text
    links = Extract(html, class_="glyph-links").links
    assert [link for link in links if "/diff/" in link[0]] == expected


def chart_ticks(html):
    return re.findall(r'<span class="glyph-chart-tick" style="left: ([\d.]+)%">([^<]+)</span>', html)


def chart_rows(html):
    """(model, its line under the name, median, bar start, bar width) of each row of the price chart."""
    found = re.findall(
        r'<a href="[^"]*">([^<]+)</a>\s*<small>([^<]+)</small>.*?'
        r'class="glyph-chart-range" style="left: ([\d.]+)%; width: ([\d.]+)%".*?'
        r'class="glyph-chart-median" style="left: ([\d.]+)%"',
        html,
        re.DOTALL,
    )
    return [
        (model, " ".join(unescape(line).split()), median, left, width) for model, line, left, width, median in found
    ]


@pytest.mark.asyncio
async def test_batch_without_rows_has_no_chart(db_path, batches):
    ds = await make_ds(db_path)
    html = (await get(ds, f"/-/glyph/imports/{C}")).text
    assert 'id="glyph-price-chart"' not in html
    assert re.findall(r"<p>No rows to chart.*?</p>", html) == ["<p>No rows to chart: the import was rolled back.</p>"]


@pytest.mark.asyncio
async def test_rolled_back_import_says_its_rows_were_removed(conn, db_path, batches):
    lineage.rollback_import(conn, A, actor="alice")
    ds = await make_ds(db_path)
    html = (await get(ds, f"/-/glyph/imports/{A}")).text
    rolled_back_at = conn.execute("SELECT rolled_back_at FROM import_batches WHERE import_id = ?", [A]).fetchone()[0]
    notice = re.sub(
        r"\s+",
        " ",
        re.sub("<[^>]+>", "", re.findall(r'<p class="glyph-rolled-back"[^>]*>(.*?)</p>', html, re.DOTALL)[0]),
    )
    assert notice == (
        f"Rolled back at {formats.utc_time(rolled_back_at)} by alice: its 3 rows were removed; this record stays."
    )
    assert [text for _, text in Extract(html, class_="glyph-links").links] == [
        "its import_batches record",
        "all imports",
        "JSON",
    ]
    assert 'id="glyph-price-chart"' not in html
    record = re.findall(r"<dt>(.*?)</dt>\s*<dd>(.*?)</dd>", html)
    assert [label for label, _ in record][:6] == [
        "Import id",
        "File",
        "Source",
        "Status",
        "Rows written (since removed)",
        "Imported at",
    ]
    listed = Extract((await get(ds, "/-/glyph/imports")).text, id="glyph-imports")
    assert listed.rows[-1] == [
        "monday.csv",
        "ebay",
        "2025-05-01 08:00:00 UTC",
        "0 (3 rolled back)",
        "rolled_back",
        "operator",
        "not kept",  # these batches were written directly, without their files
    ]
    assert rows_link(A) not in [href for href, _ in listed.links]


@pytest.mark.parametrize(
    "maximum,expected",
    [
        (0, [0, 1]),
        (1, [0, 0.2, 0.4, 0.6, 0.8, 1]),
        (9, [0, 2, 4, 6, 8, 10]),
        (10000, [0, 2000, 4000, 6000, 8000, 10000]),
        (12345.6, [0, 5000, 10000, 15000]),
        (27000, [0, 10000, 20000, 30000]),
        (7999.99, [0, 2000, 4000, 6000, 8000]),
    ],
)
def test_nice_ticks(maximum, expected):
    assert charts.nice_ticks(maximum) == expected


@pytest.mark.parametrize(
    "low,high,expected",
    [
        (300, 40000, [300, 1000, 3000, 10000, 30000, 100000]),
        (1700, 7999.99, [1000, 3000, 10000]),
        (1000, 1000, [1000, 3000]),
        (0, 25, [1, 3, 10, 30]),
        (0.5, 0.5, [1, 3]),
        (12.5, 2_500_000, [10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000, 300000, 1000000, 3000000]),
    ],
)
def test_log_ticks(low, high, expected):
    assert charts.log_ticks(low, high) == expected


@pytest.mark.parametrize(
    "value,expected",
    [(300, "$300"), (1000, "$1k"), (3000, "$3k"), (30000, "$30k"), (1_000_000, "$1M"), (3, "$3")],
)
def test_short_usd(value, expected):
    assert formats.short_usd(value) == expected


def test_price_chart_geometry():
    models = [
        {"canonical_model": "RTX_3090", "row_count": 1, "min_price": 300.0, "median_price": 300.0, "max_price": 300.0},
        {
            "canonical_model": "H100_SXM",
            "row_count": 2,
            "min_price": 10000.0,
            "median_price": 20000.0,
            "max_price": 30000.0,
        },
        {"canonical_model": "A10", "row_count": 3, "min_price": 1000.0, "median_price": 1000.0, "max_price": 3000.0},
    ]
    chart = charts.price_chart(models)
    # $300 .. $30k: a log axis of two decades, each tick a quarter of the way further
    assert chart["ticks"] == [
        {"left": 0.0, "label": "$300"},
        {"left": 26.14, "label": "$1k"},
        {"left": 50.0, "label": "$3k"},
        {"left": 76.14, "label": "$10k"},
        {"left": 100.0, "label": "$30k"},
    ]
    assert [
        (r["model"], r["left"], r["width"], r["median"], r["count_label"], r["median_label"]) for r in chart["rows"]
    ] == [
        ("H100_SXM", 76.14, 23.86, 91.2, "2 rows", "$20,000"),
        ("A10", 26.14, 23.86, 26.14, "3 rows", "$1,000"),
        ("RTX_3090", 0.0, 0.0, 0.0, "1 row", "$300"),
    ]
    assert chart["rows"][0]["title"] == "H100_SXM: 2 rows, min $10,000.00, median $20,000.00, max $30,000.00"
    assert charts.price_chart([]) == {"rows": [], "ticks": []}


def test_history_chart_geometry():
    times = [f"2025-05-{day:02d} 08:00:00.123456" for day in range(1, 8)]
    chart = charts.history_chart([100.0, 150.0, 50.0, 0.0, 200.0, 100.0, 120.0], times, formats.usd)
    # from $0 up, in round steps; the time axis labels five of seven points, first and last included
    assert [(t["y"], t["label"]) for t in chart["y_ticks"]] == [
        (100.0, "$0"),
        (75.0, "$50"),
        (50.0, "$100"),
        (25.0, "$150"),
        (0.0, "$200"),
    ]
    assert [(p["x"], p["y"]) for p in chart["points"]] == [
        (0.0, 50.0),
        (16.67, 25.0),
        (33.33, 75.0),
        (50.0, 100.0),
        (66.67, 0.0),
        (83.33, 50.0),
        (100.0, 40.0),
    ]
    assert chart["points"][0]["title"] == "2025-05-01 08:00 UTC: $100.00"
    assert [(x["x"], x["label"], x["place"]) for x in chart["x_labels"]] == [
        (0.0, "2025-05-01 08:00 UTC", "first"),
        (33.33, "2025-05-03 08:00 UTC", "minor"),
        (50.0, "2025-05-04 08:00 UTC", "centre"),
        (66.67, "2025-05-05 08:00 UTC", "minor"),
        (100.0, "2025-05-07 08:00 UTC", "last"),
    ]
    assert chart["polyline"].split()[:2] == ["0,500", "166.7,250"]
    assert charts.history_chart([], [], formats.usd)["points"] == []
    assert chart["dense"] is False
    many = charts.history_chart(
        [1.0] * (charts.DENSE_POINTS + 1), ["2025-05-01 08:00:00"] * (charts.DENSE_POINTS + 1), str
    )
    assert (many["dense"], len(many["points"]), len(many["x_labels"])) == (True, charts.DENSE_POINTS + 1, 5)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("2025-05-01 08:00:00", "2025-05-01 08:00:00 UTC"),
        ("2026-11-27 13:10:42.123456", "2026-11-27 13:10:42 UTC"),
        ("2025-05-01T00:00:00Z", "2025-05-01 00:00:00 UTC"),
        ("2025-05-01T00:00:00+00:00", "2025-05-01 00:00:00 UTC"),
        ("yesterday", "yesterday"),
        ("2025-05-01T00:00:00+02:00", "2025-05-01T00:00:00+02:00"),  # another zone: shown as written
        (None, ""),
    ],
)
def test_utc_time(value, expected):
    assert formats.utc_time(value) == expected


def repo_metadata():
    """The browsing part of the project's metadata.yml (its plugins block is replaced by PLUGIN_CONFIG)."""
    metadata = yaml.safe_load((Path(__file__).parent.parent / "metadata.yml").read_text(encoding="utf-8"))
    metadata.pop("plugins", None)
    return metadata


def cells(html, column):
    return re.findall(rf'<td class="col-{column} [^"]*">(.*?)</td>', html)


@pytest.mark.asyncio
async def test_foreign_key_cells_link_to_pages_that_exist(db_path, batches):
    ds = await make_ds(db_path, metadata=repo_metadata())
    html = (await get(ds, "/glyph/scored_listings?_sort=id")).text
    a_label = "monday.csv · 2025-05-01 08:00:00"
    b_label = "tuesday.csv · 2025-05-02 08:00:00"

    def link(import_id, label):  # one line: the label, with the UUID as the link's title
        return (
            f'<a class="glyph-import-link" href="/-/glyph/imports/{import_id}" title="import {import_id}">{label}</a>'
        )

    assert cells(html, "import_id") == [link(A, a_label)] * 3 + [link(B, b_label)] * 4
    models = ["H100_PCIE_80GB", "RTX_4090", "H100_PCIE_80GB", "RTX_4090", "RTX_4090", "RTX_4090", "L40S"]
    assert cells(html, "canonical_model") == [f'<a href="/glyph/models?model={m}">{m}</a>' for m in models]
    batches_html = (await get(ds, "/glyph/import_batches")).text
    assert cells(batches_html, "import_id") == [link(i, i) for i in (C, B, A)]
    for path, heading in [(f"/-/glyph/imports/{A}", "Import: monday.csv"), ("/glyph/models?model=L40S", "models")]:
        response = await get(ds, path)
        assert (response.status_code, title(response.text)) == (200, heading)


@pytest.mark.asyncio
async def test_table_cells_show_dollars_utc_times_and_history_links(conn, db_path):
    url = "https://market.example/listing/7"
    add_batch(conn, A, "2025-05-01 08:00:00.123456", [("RTX_4090", 25512.0, 0.5)])
    conn.execute("UPDATE scored_listings SET source_url = ?, seen_at = '2025-05-01T07:00:00Z'", [url])
    ds = await make_ds(db_path, metadata=repo_metadata())
    html = (await get(ds, "/glyph/scored_listings")).text
    assert cells(html, "price") == ['<span class="glyph-usd">$25,512.00</span>']
    assert cells(html, "seen_at") == [
        '<time class="glyph-time" datetime="2025-05-01T07:00:00Z">2025-05-01 07:00:00 UTC</time>'
    ]
    history = "/-/glyph/history?source_url=https%3A%2F%2Fmarket.example%2Flisting%2F7"
    assert cells(html, "source_url") == [
        f'<a href="{url}" rel="nofollow noreferrer">{url}</a> &middot; '
        f'<a class="glyph-history-link" href="{history}" title="price history of this listing">history</a>'
    ]
    response = await get(ds, history)
    assert (response.status_code, title(response.text)) == (200, "Listing history")
    batches_html = await get(ds, "/glyph/import_batches")
    assert cells(batches_html.text, "imported_at") == [
        '<time class="glyph-time" datetime="2025-05-01 08:00:00.123456">2025-05-01 08:00:00 UTC</time>'
    ]
    # JSON keeps the stored values
    rows = (await get(ds, "/glyph/scored_listings.json?_shape=array")).json()
    assert [(r["price"], r["seen_at"], r["source_url"]) for r in rows] == [(25512.0, "2025-05-01T07:00:00Z", url)]


@pytest.mark.asyncio
async def test_import_id_facet_shows_batch_labels(db_path, batches):
    ds = await make_ds(db_path, metadata=repo_metadata())
    response = await get(ds, "/glyph/scored_listings.json?_extra=facet_results")
    facets = response.json()["facet_results"]
    facets = facets.get("results", facets)  # 1.0a nests them one level deeper
    assert [(r["value"], r["label"], r["count"]) for r in facets["import_id"]["results"]] == [
        (B, "2025-05-02\u00a008:00\u00a0UTC · ebay · tuesday.csv", 4),
        (A, "2025-05-01\u00a008:00\u00a0UTC · ebay · monday.csv", 3),
    ]
    # Datasette computes its column facets first, then the import facet
    assert list(facets) == ["canonical_model", "region", "condition", "import_id"]


def facet_values(response_json, name="import_id"):
    facets = response_json["facet_results"]
    facets = facets.get("results", facets)
    return facets[name]


@pytest.mark.asyncio
async def test_import_facet_lists_imports_newest_first_and_all_of_them_on_request(conn, db_path):
    # 35 imports of 2 rows each, recorded out of time order; more than the 30 a facet shows at first
    times = {i: f"2025-05-01 08:{(i * 8) % 35:02d}:00" for i in range(35)}
    for i, when in times.items():
        add_batch(conn, f"00000000-0000-4000-8000-{i:012d}", when, [("L4", 100.0, 0.5)] * 2, filename="same.csv")
    newest_first = [f"00000000-0000-4000-8000-{i:012d}" for i in sorted(times, key=times.get, reverse=True)]
    ds = await make_ds(db_path, metadata=repo_metadata())
    first = facet_values((await get(ds, "/glyph/scored_listings.json?_extra=facet_results")).json())
    assert ([r["value"] for r in first["results"]], first["truncated"], first["type"]) == (
        newest_first[:30],
        True,
        "import",
    )
    every = facet_values((await get(ds, "/glyph/scored_listings.json?_extra=facet_results&_facet_size=max")).json())
    assert ([r["value"] for r in every["results"]], every["truncated"]) == (newest_first, False)
    html = (await get(ds, "/glyph/scored_listings")).text
    more = re.findall(r'<li class="facet-truncated"><a href="([^"]+)">', html)
    assert [unescape(m) for m in more] == ["/glyph/scored_listings?_facet_size=max"]
    # a selected import is named and can be cleared
    chosen = newest_first[3]
    selected = facet_values(
        (await get(ds, f"/glyph/scored_listings.json?_extra=facet_results&import_id={chosen}")).json()
    )
    assert [(r["value"], r["selected"], r["count"]) for r in selected["results"]] == [(chosen, True, 2)]
    assert selected["results"][0]["toggle_url"].endswith("/glyph/scored_listings.json?_extra=facet_results")


def banner_links(html):
    return Extract(html, id="glyph-import-banner").links


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query,expected",
    [
        (
            f"?import_id={B}",
            [
                (f"/-/glyph/imports/{B}", "2025-05-02\u00a008:00\u00a0UTC · ebay · tuesday.csv"),
                (f"/-/glyph/imports/{B}", "its page and price chart"),
                (f"/-/glyph/imports/{A}/diff/{B}", "diff with the previous import"),
                ("/-/glyph/imports", "all imports"),
                ("/-/glyph/history", "listing history"),
            ],
        ),
        (
            f"?import_id__exact={A}&_sort=import_index",
            [
                (f"/-/glyph/imports/{A}", "2025-05-01\u00a008:00\u00a0UTC · ebay · monday.csv"),
                (f"/-/glyph/imports/{A}", "its page and price chart"),
                ("/-/glyph/imports", "all imports"),
                ("/-/glyph/history", "listing history"),
            ],
        ),
        ("", []),
        (f"?import_id={UNKNOWN}", []),
        ("?canonical_model=L40S", []),
    ],
)
async def test_rows_of_one_import_link_back_to_it(db_path, batches, query, expected):
    ds = await make_ds(db_path, metadata=repo_metadata())
    response = await get(ds, "/glyph/scored_listings" + query)
    assert response.status_code == 200
    assert banner_links(response.text) == expected
    titles = {
        f"/-/glyph/imports/{A}": "Import: monday.csv",
        f"/-/glyph/imports/{B}": "Import: tuesday.csv",
        f"/-/glyph/imports/{A}/diff/{B}": (
            "Diff: monday.csv 2025-05-01 08:00 UTC \u2192 tuesday.csv 2025-05-02 08:00 UTC"
        ),
        "/-/glyph/imports": "Imports",
        "/-/glyph/history": "Listing history",
    }
    for href, _ in expected:
        page = await get(ds, href)
        assert (page.status_code, title(page.text)) == (200, titles[href])


@pytest.mark.asyncio
async def test_banner_only_on_glyph_tables(db_path, batches):
    ds = await make_ds(db_path, metadata=repo_metadata())
    assert banner_links((await get(ds, f"/glyph/models?import_id={A}")).text)[1:2] == [
        (f"/-/glyph/imports/{A}", "its page and price chart")
    ]
    assert banner_links((await get(ds, f"/glyph/import_batches?import_id={A}")).text) == []


@pytest.mark.asyncio
async def test_compare_with_any_import(db_path, batches):
    ds = await make_ds(db_path)
    html = (await get(ds, f"/-/glyph/imports/{B}")).text
    options = re.findall(r'<option value="([^"]+)"( selected)?>([^<]*)</option>', html)
    # every other import, newest first; the previous one from the same source chosen
    assert [(value, bool(selected), unescape(label)) for value, selected, label in options] == [
        (C, False, f"2025-05-03\u00a008:00\u00a0UTC · {HOSTILE} · {HOSTILE}.csv"),
        (A, True, "2025-05-01\u00a008:00\u00a0UTC · ebay · monday.csv"),
    ]
    assert re.findall(r'<form id="glyph-compare" class="core" action="([^"]+)" method="get">', html) == [
        "/-/glyph/compare"
    ]
    assert re.findall(r'<input type="hidden" name="b" value="([^"]+)">', html) == [B]
    response = await get(ds, f"/-/glyph/compare?a={C}&b={B}")
    assert (response.status_code, response.headers["location"]) == (302, f"/-/glyph/imports/{C}/diff/{B}")
    response = await get(ds, f"/-/glyph/imports/{C}/diff/{B}")
    assert (response.status_code, title(response.text)) == (
        200,
        "Diff: <script>alert(1)</script>.csv 2025-05-03 08:00 UTC \u2192 tuesday.csv 2025-05-02 08:00 UTC",
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("query", ["", f"?a={A}", f"?b={B}", "?a=&b="])
async def test_compare_needs_two_imports(db_path, batches, query):
    ds = await make_ds(db_path)
    response = await get(ds, "/-/glyph/compare" + query)
    assert (response.status_code, error_message(response.text)) == (
        400,
        "Choose two imports to compare: a (before) and b (after)",
    )


@pytest.mark.asyncio
async def test_compare_needs_view_permission(db_path, batches):
    ds = await make_ds(db_path, metadata={"databases": {"glyph": {"allow": {"id": "operator"}}}})
    response = await get(ds, f"/-/glyph/compare?a={A}&b={B}")
    assert (response.status_code, error_message(response.text)) == (
        403,
        "You do not have permission to view the imports of glyph",
    )
    response = await get(ds, f"/-/glyph/compare?a={A}&b={B}", OPERATOR)
    assert (response.status_code, response.headers["location"]) == (302, f"/-/glyph/imports/{A}/diff/{B}")


ROLLBACK_CONFIG = {"datasette-glyph": {"database": "glyph", "allow_rollback": {"id": "operator"}}}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "actor,import_id,expected",
    [
        (OPERATOR, B, [f"/api/imports/{B}"]),
        (READER, B, []),
        (None, B, []),
        (OPERATOR, C, []),  # already rolled back
    ],
)
async def test_rollback_button_for_those_allowed(db_path, batches, actor, import_id, expected):
    ds = Datasette([str(db_path)], plugin_config=ROLLBACK_CONFIG)
    await ds.invoke_startup()
    html = (await get(ds, f"/-/glyph/imports/{import_id}", actor)).text
    assert re.findall(r'<form id="glyph-rollback" class="core" action="([^"]+)" method="post">', html) == expected
    if expected:
        # the page asks first, then sends DELETE to the API with the CSRF token
        assert re.findall(r"window\.confirm\((\w+)\)", html) == ["question"]
        assert re.findall(r'method: "(\w+)"', html) == ["DELETE"]
        token = re.findall(r'headers: \{"X-CSRFToken": "([^"]*)"', html)
        assert len(token) == 1 and len(token[0]) > 10


@pytest.mark.asyncio
async def test_diff_of_identical_files_says_so(conn, db_path, batches):
    conn.execute("UPDATE import_batches SET sha256 = 'same' WHERE import_id IN (?, ?)", [A, B])
    ds = await make_ds(db_path)
    html = (await get(ds, f"/-/glyph/imports/{A}/diff/{B}")).text
    assert re.findall(r'<p class="glyph-note" id="glyph-diff-identical">(.*?)</p>', html) == [
        "Both imports have identical content: their files have the same SHA-256, so nothing below changed."
    ]
    html = (await get(ds, f"/-/glyph/imports/{B}/diff/{C}")).text
    assert 'id="glyph-diff-identical"' not in html


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path,expected",
    [
        ("/-/glyph/imports", [("/", "home"), ("/glyph", "glyph")]),
        (f"/-/glyph/imports/{A}", [("/", "home"), ("/glyph", "glyph"), ("/-/glyph/imports", "imports")]),
        (f"/-/glyph/imports/{A}/diff/{B}", [("/", "home"), ("/glyph", "glyph"), ("/-/glyph/imports", "imports")]),
        ("/-/glyph/history", [("/", "home"), ("/glyph", "glyph"), ("/-/glyph/imports", "imports")]),
        ("/-/glyph/import", [("/", "home"), ("/glyph", "glyph"), ("/-/glyph/imports", "imports")]),
    ],
)
async def test_breadcrumbs(db_path, batches, path, expected):
    ds = await make_ds(db_path)
    html = (await get(ds, path, OPERATOR)).text
    assert Extract(html, class_="crumbs").links == expected


@pytest.mark.asyncio
async def test_stylesheet_is_served_with_every_page(db_path, batches):
    ds = await make_ds(db_path)
    html = (await get(ds, "/-/glyph/imports")).text
    links = re.findall(r'<link rel="stylesheet" href="([^"]*glyph[^"]*)">', html)
    assert links == ["/-/static-plugins/datasette_glyph/glyph.css"]
    css = await get(ds, links[0])
    assert (css.status_code, css.headers["content-type"].split(";")[0]) == (200, "text/css")


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/-/glyph/imports", f"/-/glyph/imports/{B}", f"/-/glyph/imports/{A}/diff/{B}"])
async def test_narrow_screen_labels_on_every_cell(db_path, batches, path):
    """On a phone Datasette stacks a table's cells; each cell of a glyph table names its column."""
    ds = await make_ds(db_path)
    html = (await get(ds, path)).text
    for table in re.findall(r'<table class="rows-and-columns[^"]*" id="[^"]+">(.*?)</table>', html, re.DOTALL):
        headers = [unescape(h) for h in re.findall(r"<th[^>]*>([^<]*)</th>", table)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table.split("<tbody>")[1], re.DOTALL):
            assert [unescape(label) for label in re.findall(r'<td data-label="([^"]*)"', row)] == headers


URL = "https://market.example/listing/"


@pytest.fixture
def priced(conn):
    """Two imports: u1 -5%, u2 +20%, u4 +5% (a smaller change in dollars than u1's), u5 added, u3 removed."""

    def rows(*listings):
        return [{"canonical_model": m, "price": p, "score": 0.5, "source_url": URL + u} for u, m, p in listings]

    first = rows(
        ("u1", "H100_PCIE_80GB", 20000.0),
        ("u2", "RTX_4090", 2000.0),
        ("u3", "RTX_4090", 1800.0),
        ("u4", "L40S", 8000.0),
    )
    second = rows(
        ("u1", "H100_PCIE_80GB", 19000.0), ("u2", "RTX_4090", 2400.0), ("u4", "L40S", 8400.0), ("u5", "L40S", 7000.0)
    )
    insert_snapshot(conn, first, A, imported_at="2025-05-01 08:00:00")
    insert_snapshot(conn, second, B, imported_at="2025-05-02 08:00:00")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query,expected,pager",
    [
        ("", ["u1", "u2", "u4", "u5", "u3"], []),
        ("?sort=change", ["u2", "u1", "u4", "u5", "u3"], []),
        ("?sort=change&kind=changed", ["u2", "u1", "u4"], []),
        ("?model=RTX_4090", ["u2", "u3"], []),
        ("?model=L40S&sort=change", ["u4", "u5"], []),
        ("?model=A10", [], []),
        ("?sort=change&limit=2", ["u2", "u1"], ["next: ?limit=2&sort=change&offset=2"]),
        (
            "?sort=change&limit=2&offset=2",
            ["u4", "u5"],
            ["previous: ?limit=2&sort=change", "next: ?limit=2&sort=change&offset=4"],
        ),
        ("?model=L40S&limit=1", ["u4"], ["next: ?limit=1&model=L40S&offset=1"]),
    ],
)
async def test_diff_page_sorts_by_size_of_change_and_filters_by_model(db_path, priced, query, expected, pager):
    ds = await make_ds(db_path)
    html = (await get(ds, f"/-/glyph/imports/{A}/diff/{B}" + query)).text
    shown = [row[1].removeprefix(URL) for row in Extract(html, id="glyph-diff-changes").rows[1:]]
    assert shown == expected
    links = re.findall(r'<a href="[^"?]*(\?[^"]*)" id="glyph-diff-(previous|next)-page">', html)
    assert [f"{which}: {unescape(href)}" for href, which in links] == pager


@pytest.mark.asyncio
async def test_diff_page_order_and_model_form(db_path, priced):
    ds = await make_ds(db_path)
    html = (await get(ds, f"/-/glyph/imports/{A}/diff/{B}?kind=changed&sort=change&model=L40S")).text
    form = re.findall(
        r'<form class="core glyph-actions" id="glyph-diff-arrange" action="" method="get">(.*?)</form>', html, re.DOTALL
    )[0]
    assert re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form) == [("kind", "changed")]
    assert re.findall(r'<option value="([^"]*)"( selected)?>', form) == [
        ("file", ""), ("change", " selected"), ("", ""), ("H100_PCIE_80GB", ""), ("L40S", " selected"), ("RTX_4090", "")
    ]  # fmt: skip
    assert " ".join(
        re.sub("<[^>]+>", "", re.findall(r'<p id="glyph-diff-showing">(.*?)</p>', html, re.DOTALL)[0]).split()
    ) == ("Showing 1–1 of 1 (L40S only), largest price change first.")
    kinds = [unescape(href) for href, _ in Extract(html, id="glyph-diff-kinds").links]
    assert kinds == [f"/-/glyph/imports/{A}/diff/{B}?sort=change&model=L40S"] + [
        f"/-/glyph/imports/{A}/diff/{B}?kind={k}&sort=change&model=L40S" for k in ("added", "removed")
    ]


@pytest.mark.asyncio
async def test_diff_page_refuses_an_unknown_order(db_path, priced):
    ds = await make_ds(db_path)
    response = await get(ds, f"/-/glyph/imports/{A}/diff/{B}?sort=biggest")
    assert (response.status_code, error_message(response.text)) == (
        400,
        "sort: must be one of file, change (got 'biggest')",
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path,status",
    [
        ("/plain/scored_listings?import_id=x", 200),
        ("/plain/scored_listings?_facet_import=import_id", 200),
        ("/plain/scored_listings?_facet_import=import_id&import_id=x", 200),
    ],
)
async def test_a_database_without_lineage_still_browses(tmp_path, path, status):
    """Served as the plugin's database before ``glyph-migrate`` adopted it: no banner, no import facet, no error."""
    plain = tmp_path / "plain.db"
    conn = sqlite3.connect(plain)
    conn.execute("CREATE TABLE scored_listings (id INTEGER PRIMARY KEY, import_id TEXT)")
    conn.execute("INSERT INTO scored_listings (import_id) VALUES ('x')")
    conn.commit()
    conn.close()
    ds = Datasette([str(plain)], plugin_config={"datasette-glyph": {"database": "plain", "migrate": False}})
    await ds.invoke_startup()
    response = await ds.client.get(path)
    assert response.status_code == status
    assert 'id="glyph-import-banner"' not in response.text


@pytest.mark.asyncio
async def test_row_page_links_to_the_listing_history(conn, db_path):
    insert_snapshot(conn, [{"canonical_model": "L4", "price": 10.0, "score": 0.5, "source_url": URL + "9"}], A)
    row_id = conn.execute("SELECT id FROM scored_listings").fetchone()[0]
    ds = await make_ds(db_path, metadata=repo_metadata())
    html = (await get(ds, f"/glyph/scored_listings/{row_id}")).text
    links = re.findall(r'<a class="glyph-history-link" href="([^"]+)"', html)
    assert links == ["/-/glyph/history?source_url=https%3A%2F%2Fmarket.example%2Flisting%2F9"]
    history = (await get(ds, links[0])).text
    assert Extract(history, id="glyph-history-table").rows[1][1:5] == [A, "market", "L4", "$10.00"]


# Every asset a page loads is the server's own ------------------------------------------------------------------

ASSET = re.compile(
    r"""<(?:script|img|iframe|source|audio|video)\b[^>]*?\bsrc\s*=\s*["']?([^"'\s>]+)"""
    r"""|<link\b[^>]*?\bhref\s*=\s*["']?([^"'\s>]+)"""
    r"""|url\(\s*["']?([^"')\s]+)|@import\s+["']([^"']+)""",
    re.I,
)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    [
        "/-/glyph/import",
        "/-/glyph/imports",
        f"/-/glyph/imports/{A}",
        f"/-/glyph/imports/{A}/diff/{B}",
        "/-/glyph/history",
        "/glyph/scored_listings",
        "/glyph/import_batches",
        "/",
    ],
)
async def test_pages_load_no_script_or_style_from_elsewhere(db_path, batches, path):
    """README: "Everything is served by the plugin: no script or style comes from a CDN". Every script, style,
    image or font a page names is a path on this server, and the plugin's own stylesheet is one of them."""
    ds = await make_ds(db_path)
    response = await get(ds, path, OPERATOR)
    assert response.status_code == 200
    assets = [next(g for g in m.groups() if g) for m in ASSET.finditer(response.text)]
    # (Datasette's own <link rel="alternate"> names the page's JSON by its absolute URL on this server)
    elsewhere = [
        a for a in assets if urlsplit(a).netloc not in ("", "localhost") or not urlsplit(a).path.startswith("/")
    ]
    assert elsewhere == []
    assert "/-/static-plugins/datasette_glyph/glyph.css" in {a.split("?")[0] for a in assets}
    css = await ds.client.get("/-/static-plugins/datasette_glyph/glyph.css")
    assert (css.status_code, [a for a in ASSET.findall(css.text) if any(a)]) == (200, [])
