"""The HTML pages under /-/glyph/ and the menu and table links to them, through Datasette's test client."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from datasette_test import Datasette, actor_cookie

from datasette_glyph import lineage, pages

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
        "INSERT INTO import_batches (import_id, imported_at, record_count, filename, source, description, status, actor)"
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


async def make_ds(db_path, metadata=None):
    ds = Datasette([str(db_path)], plugin_config=PLUGIN_CONFIG, metadata=metadata)
    await ds.invoke_startup()
    return ds


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
    "path,actor,status",
    [
        ("/-/glyph/import", None, 403),
        ("/-/glyph/import", READER, 403),
        ("/-/glyph/import", OPERATOR, 200),
        ("/-/glyph/imports", None, 200),
        ("/-/glyph/imports", OPERATOR, 200),
        ("/-/glyph/imports?page=1", None, 200),
        ("/-/glyph/imports?page=2", None, 404),
        ("/-/glyph/imports?page=0", None, 400),
        ("/-/glyph/imports?page=two", None, 400),
        ("/-/glyph/imports?page=%C2%B2", None, 400),  # ² is a digit to str.isdigit, not to int()
        ("/-/glyph/imports?page=%D9%A3", None, 400),  # Arabic-Indic 3
        ("/-/glyph/imports?page=99999999999999999999", None, 404),
        ("/-/glyph/imports?page=184467440737095517", None, 404),  # its offset just past 64 bits
        (f"/-/glyph/imports/{A}", None, 200),
        (f"/-/glyph/imports/{C}", None, 200),
        (f"/-/glyph/imports/{UNKNOWN}", None, 404),
        (f"/-/glyph/imports/{UNKNOWN}", OPERATOR, 404),
    ],
)
async def test_status_codes(db_path, batches, path, actor, status):
    ds = await make_ds(db_path)
    response = await get(ds, path, actor)
    assert response.status_code == status


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    ["/-/glyph/imports", f"/-/glyph/imports/{A}"],
)
@pytest.mark.parametrize("actor,status", [(None, 403), (READER, 403), (OPERATOR, 200)])
async def test_batch_pages_need_view_permission(db_path, batches, path, actor, status):
    ds = await make_ds(db_path, metadata={"databases": {"glyph": {"allow": {"id": "operator"}}}})
    response = await get(ds, path, actor)
    assert response.status_code == status


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "actor,expected",
    [
        (None, []),
        (READER, []),
        (OPERATOR, [("/-/glyph/import", "Import listings")]),
    ],
)
async def test_menu_link_only_for_importers(db_path, actor, expected):
    ds = await make_ds(db_path)
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
        ["File", "Source", "Imported at", "Rows", "Status", "Actor"],
        [HOSTILE + ".csv", HOSTILE, "2025-05-03 08:00:00", "0", "rolled_back", HOSTILE],
        ["tuesday.csv", "ebay", "2025-05-02 08:00:00", "4", "complete", ""],
        ["monday.csv", "ebay", "2025-05-01 08:00:00", "3", "complete", "operator"],
    ]
    assert table.links == [
        (f"/-/glyph/imports/{C}", HOSTILE + ".csv"),
        (rows_link(C), "0"),
        (f"/-/glyph/imports/{B}", "tuesday.csv"),
        (rows_link(B), "4"),
        (f"/-/glyph/imports/{A}", "monday.csv"),
        (rows_link(A), "3"),
    ]
    first_cell = re.findall(rf'<tr data-import-id="{C}">\s*<td>(.*?)</td>', response.text)
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
    for i in range(pages.IMPORTS_PER_PAGE + 1):
        add_batch(
            conn, f"00000000-0000-4000-8000-{i:012d}", f"2025-01-01 00:{i // 60:02d}:{i % 60:02d}", filename=f"{i}.csv"
        )
    ds = await make_ds(db_path)
    first = Extract((await get(ds, "/-/glyph/imports")).text, id="glyph-imports").rows[1:]
    second_html = (await get(ds, "/-/glyph/imports?page=2")).text
    second = Extract(second_html, id="glyph-imports").rows[1:]
    assert [row[0] for row in first] == [f"{i}.csv" for i in range(pages.IMPORTS_PER_PAGE, 0, -1)]
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
        ("Imported at", "2025-05-02 08:00:00"),
    ]
    assert Extract(html, class_="glyph-links").links == [
        (rows_link(B), "Browse its 4 rows"),
        (f"/glyph/import_batches?import_id={B}&_nosuggest=1", "its import_batches record"),
        (f"/-/glyph/imports/{A}/diff/{B}", "compare with previous import from the same source"),
        ("/-/glyph/imports", "all imports"),
        (f"/api/imports/{B}", "JSON"),
    ]
    statuses = [(await get(ds, href)).status_code for href, _ in Extract(html, class_="glyph-links").links]
    assert statuses == [200] * 5
    chart = Extract(html, id="glyph-price-chart")
    assert chart.texts == ["$0", "$2,000", "$4,000", "$6,000", "$8,000", "price (USD)", "L40S", "1", "RTX_4090", "3"]


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


@pytest.mark.asyncio
async def test_batch_without_rows_has_no_chart(db_path, batches):
    ds = await make_ds(db_path)
    html = (await get(ds, f"/-/glyph/imports/{C}")).text
    assert Extract(html, id="glyph-price-chart").texts == []
    assert re.findall(r"<p>This import has no rows.*?</p>", html) == [
        "<p>This import has no rows in scored_listings (it was rolled back).</p>"
    ]


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
    assert pages.nice_ticks(maximum) == expected


def test_price_chart_geometry():
    models = [
        {"canonical_model": "A10", "row_count": 2, "min_price": 1000.0, "median_price": 1500.0, "max_price": 2000.0},
        {
            "canonical_model": "H100_SXM",
            "row_count": 1,
            "min_price": 4000.0,
            "median_price": 4000.0,
            "max_price": 4000.0,
        },
    ]
    chart = pages.price_chart(models)
    label_width = 16 + pages.CHART_CHAR_WIDTH * len("H100_SXM")
    plot_width = pages.CHART_WIDTH - label_width - pages.CHART_RIGHT
    assert (chart["plot_left"], chart["plot_right"]) == (label_width, label_width + plot_width)

    def x(fraction):  # 0 at the left edge of the plot, 1 at the right: $4,000, the top tick
        return round(label_width + plot_width * fraction, 1)

    assert [(t["x"], t["label"]) for t in chart["ticks"]] == [
        (x(0), "$0"),
        (x(0.25), "$1,000"),
        (x(0.5), "$2,000"),
        (x(0.75), "$3,000"),
        (x(1), "$4,000"),
    ]
    assert [(r["model"], r["y"], r["x_min"], r["x_median"], r["x_max"], r["count"]) for r in chart["rows"]] == [
        ("A10", 24.0, x(0.25), x(0.375), x(0.5), 2),
        ("H100_SXM", 52.0, x(1), x(1), x(1), 1),
    ]
    assert chart["height"] == 10 + 2 * 28 + 40
    assert pages.price_chart([]) == {"rows": [], "ticks": [], "width": pages.CHART_WIDTH, "height": 0}


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
    assert (
        cells(html, "import_id")
        == [f'<a href="/-/glyph/imports/{A}">{a_label}</a>&nbsp;<em>{A}</em>'] * 3
        + [f'<a href="/-/glyph/imports/{B}">{b_label}</a>&nbsp;<em>{B}</em>'] * 4
    )
    models = ["H100_PCIE_80GB", "RTX_4090", "H100_PCIE_80GB", "RTX_4090", "RTX_4090", "RTX_4090", "L40S"]
    assert cells(html, "canonical_model") == [f'<a href="/glyph/models?model={m}">{m}</a>' for m in models]
    batches_html = (await get(ds, "/glyph/import_batches")).text
    assert cells(batches_html, "import_id") == [f'<a href="/-/glyph/imports/{i}">{i}</a>' for i in (C, B, A)]
    for path in [f"/-/glyph/imports/{A}", "/glyph/models?model=L40S"]:
        assert (await get(ds, path)).status_code == 200


@pytest.mark.asyncio
async def test_import_id_facet_shows_batch_labels(db_path, batches):
    ds = await make_ds(db_path, metadata=repo_metadata())
    response = await get(ds, "/glyph/scored_listings.json?_extra=facet_results")
    facets = response.json()["facet_results"]
    facets = facets.get("results", facets)  # 1.0a nests them one level deeper
    assert [(r["value"], r["label"], r["count"]) for r in facets["import_id"]["results"]] == [
        (B, "tuesday.csv · 2025-05-02 08:00:00", 4),
        (A, "monday.csv · 2025-05-01 08:00:00", 3),
    ]
    assert list(facets) == ["import_id", "canonical_model", "region", "condition"]
