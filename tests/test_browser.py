"""The pages in a real browser: headless Chromium against a real ``datasette`` server process.

Upload through the page (file picker, drag and drop, progress bar), follow the result to the rows, apply the
import_id facet, open the batch page and its chart; errors shown row by row; what an anonymous visitor sees.
Each step saves a screenshot; the folder is printed at the start of the run.
"""

import contextlib
import csv
import re
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import yaml

from datasette_glyph import formats
from datasette_glyph.engine import migrator
from datasette_glyph.engine.sample import URL_PREFIX
from datasette_glyph.engine.sqlite import connect

from .browser_support import REPO, actor_cookie, chromium, require_browser, screenshot_dir
from .server import running_server
from .snapshots import insert_snapshot, market_snapshots
from .support import error_message

SECRET = "glyph-browser-test-secret"
OPERATOR = {"id": "operator"}
SAMPLE = REPO / "sample" / "scored_sample.csv"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Two bad rows (CSV lines 3 and 4) between good ones.
BROKEN_CSV = (
    "canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score\n"
    "H100_PCIE_80GB,80,7,True,350,25000.0,0.9\n"
    "RTX_4090,24,0,False,450,abc,0.5\n"
    "A10,twenty,0,False,150,2397.01,0.6\n"
    "L40S,48,0,False,350,7999.0,0.7\n"
)
BROKEN_NAME = "broken<b>bold</b>.csv"
TOP_OF_PAGE = {"x": 0, "y": 0, "width": 1200, "height": 1500}  # a table page's header, facets and first rows


def sample_rows(path=SAMPLE):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``datasette glyph.db -m <the project's metadata.yml, with operator allowed to import>``."""
    directory = tmp_path_factory.mktemp("browser")
    db_path = directory / "glyph.db"
    conn = connect(db_path)
    migrator.migrate(conn)
    conn.close()
    metadata = yaml.safe_load((REPO / "metadata.yml").read_text(encoding="utf-8"))
    plugin_config = {**metadata.pop("plugins")["datasette-glyph"], "allow_import": {"id": OPERATOR["id"]}}
    with running_server(
        db_path, metadata=metadata, plugin_config=plugin_config, env={"DATASETTE_SECRET": SECRET}, log_dir=directory
    ) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    require_browser()
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def shots(pytestconfig):
    path = screenshot_dir()
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\nbrowser screenshots: {path}")
    return path


def new_page(browser, server, actor=None):
    context = browser.new_context(base_url=server.url, viewport={"width": 1200, "height": 900})
    context.set_default_timeout(20_000)
    if actor:
        context.add_cookies([actor_cookie(server.url, SECRET, actor)])
    return context.new_page()


@pytest.fixture
def operator_page(browser, server):
    page = new_page(browser, server, OPERATOR)
    yield page
    page.context.close()


@pytest.fixture
def anonymous_page(browser, server):
    page = new_page(browser, server)
    yield page
    page.context.close()


def submit_upload(page) -> dict:
    """Press Import and wait for the page to show the answer; return the API's JSON answer."""
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/import") as answer:
        page.click("#glyph-submit")
    page.wait_for_selector("#glyph-result:not([hidden]), #glyph-errors:not([hidden])")
    return answer.value.json()


def upload(page, path, source, description) -> dict:
    page.fill("#glyph-source", source)
    page.fill("#glyph-description", description)
    page.set_input_files("#glyph-file", str(path))
    return submit_upload(page)


def table_cells(page, selector):
    return page.eval_on_selector_all(
        f"{selector} tr", "trs => trs.map(tr => Array.from(tr.cells, td => td.textContent.trim()))"
    )


def query(url):
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_upload_browse_facet_and_chart(operator_page, server, shots):
    page = operator_page
    expected_rows = sample_rows()
    models = sorted({row["canonical_model"] for row in expected_rows})

    # The menu leads to the upload page.
    page.goto("/")
    page.click("details.nav-menu summary")
    page.get_by_role("link", name="Import listings").click()
    page.wait_for_url("**/-/glyph/import")
    assert page.inner_text("h1") == "Import listings"
    page.screenshot(path=shots / "01-import-page.png", full_page=True)

    first = upload(page, SAMPLE, "ebay", "Monday's file")
    assert (first["ok"], first["record_count"], bool(UUID.match(first["import_id"]))) == (
        True,
        len(expected_rows),
        True,
    )
    assert [
        page.inner_text("#glyph-result-id"),
        page.inner_text("#glyph-result-count"),
        page.inner_text("#glyph-result-ignored"),
    ] == [first["import_id"], str(len(expected_rows)), ", ".join(first["ignored_columns"]) or "none"]
    page.screenshot(path=shots / "02-import-result.png", full_page=True)

    # The result links to the batch's rows, in file order.
    page.click("#glyph-result-rows")
    page.wait_for_url(re.compile(r".*/glyph/scored_listings\?.*"))
    assert query(page.url) == {"import_id": first["import_id"], "_sort": "import_index", "_nosuggest": "1"}
    assert re.match(r"\d+", page.inner_text("h3")).group() == str(len(expected_rows))
    cells = page.eval_on_selector_all("td.col-import_index", "tds => tds.map(td => td.textContent.trim())")
    assert cells == [str(i) for i in range(1, len(expected_rows) + 1)]
    page.screenshot(path=shots / "03-batch-rows.png", full_page=True, clip=TOP_OF_PAGE)

    # A second import of the same file from the same source: the page warns, and the form starts over so that
    # another press of Import does not send it a third time.
    page.goto("/-/glyph/import")
    second = upload(page, SAMPLE, "ebay", "Tuesday's file")
    assert (second["record_count"], second["previous_import_id"]) == (len(expected_rows), first["import_id"])
    assert page.is_visible("#glyph-result-duplicate")
    assert page.get_attribute("#glyph-result-duplicate-link", "href") == f"/-/glyph/imports/{first['import_id']}"
    assert page.get_attribute("#glyph-result-duplicate-page", "href") == f"/-/glyph/imports/{second['import_id']}"
    assert page.inner_text("#glyph-status") == (
        f"Imported {len(expected_rows)} rows from scored_sample.csv. Warning: the same content was imported before,"
        f" as import {first['import_id']}."
    )
    assert page.evaluate("document.getElementById('glyph-file').files.length") == 0
    assert [page.input_value("#glyph-source"), page.input_value("#glyph-description")] == ["", ""]
    assert page.evaluate("document.activeElement.id") == "glyph-result-heading"
    page.screenshot(path=shots / "02c-duplicate-warning.png", full_page=True)
    # Then pick the first import in the import_id facet.
    page.goto("/glyph/scored_listings?_nosuggest=1")
    assert re.match(r"[\d,]+", page.inner_text("h3")).group() == str(2 * len(expected_rows))
    facet_links = page.locator(f'.facet-info a[href*="import_id={first["import_id"]}"]')
    label = facet_links.inner_text().replace("\xa0", " ")
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC · ebay · scored_sample\.csv$", label)
    facet_links.click()
    page.wait_for_url(re.compile(rf".*import_id={first['import_id']}.*"))
    assert query(page.url)["import_id"] == first["import_id"]
    assert re.match(r"\d+", page.inner_text("h3")).group() == str(len(expected_rows))
    assert page.inner_text("#glyph-banner-import").replace("\xa0", " ") == label
    page.screenshot(path=shots / "04-facet-applied.png", full_page=True, clip=TOP_OF_PAGE)

    # The list of imports, newest first, leads to the batch page and its chart.
    page.goto("/-/glyph/imports")
    batches = server.get("/glyph/import_batches.json?_shape=array&_sort_desc=id").json()
    assert table_cells(page, "#glyph-imports tbody") == [
        [
            b["filename"],
            b["source"],
            formats.utc_time(b["imported_at"]),
            str(b["record_count"]),
            b["status"],
            b["actor"],
            f"{b['bytes']:,} bytes",  # the kept original file, linked for download
        ]
        for b in batches
    ]
    assert [(b["filename"], b["source"], b["record_count"], b["actor"]) for b in batches] == [
        ("scored_sample.csv", "ebay", len(expected_rows), "operator")
    ] * 2
    assert page.eval_on_selector_all("#glyph-imports tbody tr", "trs => trs.map(tr => tr.dataset.importId)") == [
        second["import_id"],
        first["import_id"],
    ]
    page.screenshot(path=shots / "05-imports.png", full_page=True)
    page.click(f'#glyph-imports tr[data-import-id="{second["import_id"]}"] td:first-child a')
    page.wait_for_url(f"**/-/glyph/imports/{second['import_id']}")
    chart = page.locator("#glyph-price-chart")
    assert chart.is_visible()
    summary = table_cells(page, "#glyph-model-summary tbody")
    assert [row[0] for row in summary] == models
    by_median = sorted(summary, key=lambda row: (-float(row[3].strip("$").replace(",", "")), row[0]))
    assert page.eval_on_selector_all("#glyph-price-chart .glyph-chart-label a", "as => as.map(a => a.textContent)") == [
        row[0] for row in by_median
    ]
    assert page.get_attribute("#glyph-diff-previous", "href") == (
        f"/-/glyph/imports/{first['import_id']}/diff/{second['import_id']}"
    )
    page.screenshot(path=shots / "06-batch-page.png", full_page=True)
    chart.screenshot(path=shots / "07-price-chart.png")
    with page.expect_navigation() as diff:
        page.click("#glyph-diff-previous")
    assert diff.value.status == 200

    # The batch page links the kept original, and its button imports it again as a new batch.
    page.goto(f"/-/glyph/imports/{first['import_id']}")
    download = page.get_attribute("#glyph-file-download", "href")
    assert download == f"/api/imports/{first['import_id']}/file"
    assert page.request.get(download).body() == SAMPLE.read_bytes()
    page.click("#glyph-reimport-button")
    page.wait_for_selector("#glyph-reimport-of")
    again = server.get("/api/imports?limit=1").json()["imports"][0]
    assert (urlsplit(page.url).path, again["reimport_of"], again["record_count"]) == (
        f"/-/glyph/imports/{again['import_id']}",
        first["import_id"],
        len(expected_rows),
    )
    assert page.get_attribute("#glyph-reimport-of", "href") == f"/-/glyph/imports/{first['import_id']}"
    page.screenshot(path=shots / "08-reimported.png", full_page=True)


def test_progress_bar_while_uploading(operator_page, shots, tmp_path):
    page = operator_page
    rows = sample_rows()
    big = tmp_path / "big.csv"
    with open(big, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for _ in range(300):
            writer.writerows(rows)
    size = big.stat().st_size
    page.goto("/-/glyph/import")
    # Slow the upload down to about 2 MB/s so that the browser reports progress several times.
    cdp = page.context.new_cdp_session(page)
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 2 * 1024 * 1024},
    )
    page.evaluate("""() => {
        window.glyphProgress = [];
        const bar = document.getElementById("glyph-progress");
        new MutationObserver(() => window.glyphProgress.push(bar.getAttribute("value")))
            .observe(bar, {attributes: true, attributeFilter: ["value"]});
    }""")
    page.set_input_files("#glyph-file", str(big))
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/import") as answer:
        page.click("#glyph-submit")
        page.wait_for_function("document.getElementById('glyph-progress').value >= 20")
        assert page.is_visible("#glyph-progress")
        page.screenshot(path=shots / "02b-upload-progress.png")
    page.wait_for_selector("#glyph-result:not([hidden])")
    assert answer.value.json()["record_count"] == 300 * len(rows)
    percentages = [int(v) for v in page.evaluate("window.glyphProgress") if v is not None]
    assert len({p for p in percentages if 0 < p < 100}) >= 2, (size, percentages)
    assert percentages == sorted(percentages)


def test_invalid_file_shows_its_errors_row_by_row(operator_page, shots):
    page = operator_page
    page.goto("/-/glyph/import")
    # Drop the file on the drop zone, as a person dragging it from their desktop would.
    page.evaluate(
        """([name, text]) => {
        const data = new DataTransfer();
        data.items.add(new File([text], name, {type: "text/csv"}));
        const zone = document.getElementById("glyph-dropzone");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
    }""",
        [BROKEN_NAME, BROKEN_CSV],
    )
    assert page.inner_text("#glyph-file-name") == f"{BROKEN_NAME} (1 KB)"
    assert page.locator("#glyph-file-name b").count() == 0
    answer = submit_upload(page)
    assert answer["ok"] is False
    shown = table_cells(page, "#glyph-error-table tbody")
    assert shown == [
        ["" if e.get(k) is None else str(e[k]) for k in ("line", "column", "value", "message")]
        for e in answer["errors"]
    ]
    assert [row[:3] for row in shown] == [["3", "price", "abc"], ["4", "vram_gb", "twenty"]]
    # each cell names its column for a phone's stacked layout, as the pages' own tables do
    labels = page.eval_on_selector_all(
        "#glyph-error-table tbody tr", "trs => trs.map(tr => Array.from(tr.cells, td => td.dataset.label))"
    )
    assert labels == [["Line", "Column", "Value", "Message"]] * 2
    assert page.inner_text("#glyph-status").startswith("Nothing was imported. ")
    assert page.evaluate("document.activeElement.id") == "glyph-errors-heading"
    assert page.is_visible("#glyph-result") is False
    assert page.inner_text("#glyph-errors h2") == "Nothing was imported"
    page.screenshot(path=shots / "08-import-errors.png", full_page=True)


def test_anonymous_visitor_sees_no_import_link_and_gets_403(anonymous_page, server, shots):
    page = anonymous_page
    page.goto("/")
    assert page.locator("a", has_text="Import listings").count() == 0
    page.goto("/glyph/scored_listings")
    assert page.locator("a", has_text="Import listings").count() == 0
    response = page.goto("/-/glyph/import")
    assert (response.status, error_message(page.content())) == (
        403,
        "You do not have permission to import listings (glyph-import)",
    )
    page.screenshot(path=shots / "09-anonymous-forbidden.png")
    assert page.goto("/-/glyph/imports").status == 200


# --- A realistic market: dozens of imports from two sources, read at a desktop's width and a phone's -----------

WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
ROLLER = {"id": "roller"}  # may roll imports back (allow_rollback below); OPERATOR may not
MARKET_SOURCES = (("ebay", 1, 120, "upload20k.csv", "08"), ("broker-feed", 2, 60, "broker_daily.csv", "14"))
MARKET_IMPORTS = 24  # per source
SMALL_TEXT_PX = 12  # the smallest text the pages may draw, in CSS pixels
CONTRAST = """(el) => {
    // WCAG contrast ratio of an element's text colour against the first opaque background behind it
    const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
    const lum = ([r, g, b]) => {
        const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    };
    let bg = null;
    for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
        const c = rgb(getComputedStyle(node).backgroundColor);
        if (c.length < 4 || c[3] > 0) { bg = c; break; }
    }
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(bg || [255, 255, 255])];
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """A server over 48 imports (24 a source, each the market a little later) of 60 to 130 rows, and the
    import ids per source, oldest first."""
    directory = tmp_path_factory.mktemp("market")
    db_path = directory / "glyph.db"
    conn = connect(db_path)
    migrator.migrate(conn)
    ids = {}
    for source, seed, rows, filename, hour in MARKET_SOURCES:
        snapshots, _ = market_snapshots(MARKET_IMPORTS, rows, seed)
        ids[source] = [
            insert_snapshot(
                conn, snapshot, source=source, filename=filename, imported_at=f"2025-05-{day:02d} {hour}:00:00.123456"
            )
            for day, snapshot in enumerate(snapshots, 1)
        ]
    conn.close()
    metadata = yaml.safe_load((REPO / "metadata.yml").read_text(encoding="utf-8"))
    plugin_config = {
        **metadata.pop("plugins")["datasette-glyph"],
        "allow_import": {"id": OPERATOR["id"]},
        "allow_rollback": {"id": ROLLER["id"]},
    }
    with running_server(
        db_path, metadata=metadata, plugin_config=plugin_config, env={"DATASETTE_SECRET": SECRET}, log_dir=directory
    ) as running:
        running.ids = ids
        yield running


def sized_page(browser, server, width, actor=OPERATOR):
    w, h = WIDTHS[width]
    context = browser.new_context(base_url=server.url, viewport={"width": w, "height": h})
    context.set_default_timeout(20_000)
    if actor:
        context.add_cookies([actor_cookie(server.url, SECRET, actor)])
    return context.new_page()


@pytest.fixture(params=list(WIDTHS))
def width(request):
    return request.param


@pytest.fixture
def market_page(browser, market, width):
    page = sized_page(browser, market, width)
    yield page
    page.context.close()


def glyph_pages(market):
    ebay = market.ids["ebay"]
    return {
        "imports": "/-/glyph/imports",
        "import": f"/-/glyph/imports/{ebay[-1]}",
        "diff": f"/-/glyph/imports/{ebay[-2]}/diff/{ebay[-1]}",
        "history": f"/-/glyph/history?source_url={URL_PREFIX}5",
        "upload": "/-/glyph/import",
    }


def test_narrow_tables_label_every_cell(market_page, market, width, shots):
    """At 390 px Datasette stacks each row's cells; every glyph cell then shows its column's name above it."""
    page = market_page
    for name, path in glyph_pages(market).items():
        if name == "upload":
            continue
        page.goto(path)
        shown = page.eval_on_selector_all(
            "table.rows-and-columns tbody td",
            "tds => tds.map(td => [td.dataset.label, getComputedStyle(td, '::before').content])",
        )
        assert len(shown) > 10, name
        if width == "phone":
            assert [content for _, content in shown] == [f'"{label}"' for label, _ in shown], name
        else:
            assert {content for _, content in shown} == {"none"}, name
            # and at 1280 px every glyph table fits the page: nothing to scroll sideways
            overflow = page.eval_on_selector_all(
                ".table-wrapper", "ws => ws.map(w => w.scrollWidth - w.clientWidth).filter(d => d > 0)"
            )
            assert overflow == [], name
        page.screenshot(path=shots / f"10-{name}-{width}.png", full_page=True, clip=top_of(page, width))


def top_of(page, width, height=2000):
    w, _ = WIDTHS[width]
    return {"x": 0, "y": 0, "width": w, "height": min(height, page.evaluate("document.body.scrollHeight"))}


def test_import_id_cells_stay_on_one_line(market_page, width, shots):
    page = market_page
    page.goto("/glyph/scored_listings?_nosuggest=1&_size=20")
    links = page.eval_on_selector_all(
        "td.col-import_id a.glyph-import-link",
        "as => as.map(a => [a.getClientRects().length, a.getBoundingClientRect().height])",
    )
    assert len(links) == 20
    assert {rects for rects, _ in links} == {1}
    assert max(height for _, height in links) < 1.5 * SMALL_TEXT_PX * 1.6
    if width == "desktop":
        # per row: the height of the import_id cell's content, and the tallest content of the other cells
        rows = page.eval_on_selector_all(
            "table.rows-and-columns tbody tr",
            """trs => trs.map(tr => {
                const height = td => { const r = document.createRange(); r.selectNodeContents(td);
                                       return r.getBoundingClientRect().height; };
                const cells = Array.from(tr.querySelectorAll('td'));
                const mine = cells.filter(td => td.classList.contains('col-import_id')).map(height);
                const others = cells.filter(td => !td.classList.contains('col-import_id')).map(height);
                return [Math.max(...mine), Math.max(...others)];
            })""",
        )
        # another column (the title) sets each row's height, never import_id: it is one line, not the UUID's five
        assert all(mine < others for mine, others in rows), rows
    page.screenshot(path=shots / f"11-table-rows-{width}.png", full_page=True, clip=top_of(page, width, 2600))


def test_price_chart_is_legible(market_page, market, width, shots):
    page = market_page
    page.goto(glyph_pages(market)["import"])
    chart = page.locator("#glyph-price-chart")
    texts = page.eval_on_selector_all(
        "#glyph-price-chart .glyph-chart-tick, #glyph-price-chart .glyph-chart-label a, #glyph-price-chart small",
        "els => els.map(e => [e.textContent.trim(), parseFloat(getComputedStyle(e).fontSize),"
        " e.getBoundingClientRect().height])",
    )
    assert texts and min(size for _, size, _ in texts) >= SMALL_TEXT_PX
    assert min(height for _, _, height in texts) >= SMALL_TEXT_PX
    # two axes of the same ticks, above and below the bars, their labels apart from each other
    ticks = page.eval_on_selector_all(
        "#glyph-price-chart .glyph-chart-axis-top .glyph-chart-tick",
        "ts => ts.map(t => { const r = t.getBoundingClientRect(); return [t.textContent, r.left, r.right]; })",
    )
    bottom = page.eval_on_selector_all(
        "#glyph-price-chart .glyph-chart-axis-bottom .glyph-chart-tick", "ts => ts.map(t => t.textContent)"
    )
    # the market's cheapest model is under $1k and its dearest over $30k: ticks from $300 to $100k
    assert [t[0] for t in ticks] == bottom == ["$300", "$1k", "$3k", "$10k", "$30k", "$100k"]
    assert all(a[2] + 4 <= b[1] for a, b in zip(ticks, ticks[1:])), ticks
    # most expensive first; every model's bar visible, however cheap
    medians = page.eval_on_selector_all(
        "#glyph-price-chart .glyph-chart-label small", "ss => ss.map(s => s.textContent)"
    )
    values = [float(re.search(r"median \$([\d,]+)", m).group(1).replace(",", "")) for m in medians]
    api = page.request.get(urljoin(page.url, "/api/imports/" + market.ids["ebay"][-1])).json()
    assert values == sorted(values, reverse=True) and len(values) == len(api["models"]) > 1
    bars = page.eval_on_selector_all(
        "#glyph-price-chart .glyph-chart-range", "bs => bs.map(b => b.getBoundingClientRect().width)"
    )
    assert min(bars) >= 8
    assert "rows" not in [m.split()[-1] for m in medians if m.split()[-2] == "1"]  # "1 row", not "1 rows"
    chart.screenshot(path=shots / f"12-price-chart-{width}.png")


def test_history_chart_is_legible(market_page, market, width, shots):
    page = market_page
    page.goto(glyph_pages(market)["history"])
    for chart in ("glyph-history-price", "glyph-history-score"):
        labels = page.eval_on_selector_all(
            f"#{chart} .glyph-y, #{chart} .glyph-x",
            "ls => ls.filter(l => l.offsetParent !== null).map(l => { const r = l.getBoundingClientRect();"
            " return [l.className, l.textContent, parseFloat(getComputedStyle(l).fontSize), r.left, r.right]; })",
        )
        assert min(size for _, _, size, _, _ in labels) >= SMALL_TEXT_PX
        y_labels = [text for cls, text, *_ in labels if cls == "glyph-y"]
        assert y_labels[0] in ("$0", "0"), y_labels  # the axis starts at zero
        x_labels = [(left, right, text) for cls, text, _, left, right in labels if cls.startswith("glyph-x")]
        assert all(a[1] <= b[0] for a, b in zip(x_labels, x_labels[1:])), x_labels
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", text) for _, _, text in x_labels), x_labels
        assert len(x_labels) >= 2
    page.screenshot(path=shots / f"13-history-{width}.png", full_page=True, clip=top_of(page, width, 1400))


def test_import_facet_newest_first_and_every_import_reachable(market_page, market, width, shots):
    page = market_page
    page.goto("/glyph/scored_listings?_nosuggest=1")
    batches = market.get("/glyph/import_batches.json?_shape=array&_size=max&_sort_desc=imported_at").json()
    expected = [f"{b['imported_at'][:16]} UTC · {b['source']} · {b['filename']}" for b in batches]
    shown = [
        t.replace("\xa0", " ")
        for t in page.locator(
            "#facet-import_id li a[data-facet-value], #facet-import_id li a:not(.cross)"
        ).all_inner_texts()
        if t != "…"
    ]
    assert shown == expected[:30]
    page.screenshot(path=shots / f"14-import-facet-{width}.png", full_page=True, clip=top_of(page, width, 1800))
    page.click("#facet-import_id li.facet-truncated a")
    page.wait_for_url(re.compile(r".*_facet_size=max.*"))
    shown = [t.replace("\xa0", " ") for t in page.locator("#facet-import_id li a:not(.cross)").all_inner_texts()]
    assert shown == expected
    # a label never breaks inside its time
    lines = page.eval_on_selector_all(
        "#facet-import_id li a:not(.cross)",
        """as => as.map(a => {
            const text = a.firstChild, r = document.createRange();
            r.setStart(text, 0); r.setEnd(text, 20);  // "2025-05-24 14:00 UTC"
            return r.getClientRects().length;
        })""",
    )
    assert set(lines) == {1}


def test_banner_leads_back_to_the_import(market_page, market, width, shots):
    page = market_page
    ebay = market.ids["ebay"]
    page.goto(f"/glyph/scored_listings?import_id={ebay[5]}&_sort=import_index&_nosuggest=1")
    banner = {
        link: page.get_attribute(f"#glyph-banner-{link}", "href")
        for link in ("import", "page", "diff", "imports", "history")
    }
    assert banner == {
        "import": f"/-/glyph/imports/{ebay[5]}",
        "page": f"/-/glyph/imports/{ebay[5]}",
        "diff": f"/-/glyph/imports/{ebay[4]}/diff/{ebay[5]}",
        "imports": "/-/glyph/imports",
        "history": "/-/glyph/history",
    }
    assert page.inner_text("#glyph-banner-import").replace("\xa0", " ") == "2025-05-06 08:00 UTC · ebay · upload20k.csv"
    page.screenshot(path=shots / f"15-banner-{width}.png", clip=top_of(page, width, 900))
    for link in ("page", "diff"):
        page.goto(f"/glyph/scored_listings?import_id={ebay[5]}&_nosuggest=1")
        with page.expect_navigation() as answer:
            page.click(f"#glyph-banner-{link}")
        assert answer.value.status == 200


def test_rows_lead_to_a_listing_history(market_page, market, width):
    page = market_page
    page.goto(f"/glyph/scored_listings?source_url={URL_PREFIX}5&_nosuggest=1")
    with page.expect_navigation() as answer:
        page.locator("a.glyph-history-link").first.click()
    assert answer.value.status == 200
    assert page.inner_text("h1") == "Listing history"
    history = market.get(f"/api/listings/history?source_url={URL_PREFIX}5").json()["history"]
    assert len(table_cells(page, "#glyph-history-table tbody")) == len(history) > MARKET_IMPORTS


@pytest.mark.parametrize("actor,button", [(ROLLER, True), (OPERATOR, False), (None, False)])
def test_rollback_button_only_for_those_allowed(browser, market, actor, button):
    page = sized_page(browser, market, "desktop", actor)
    page.goto(f"/-/glyph/imports/{market.ids['broker-feed'][3]}")
    assert page.locator("#glyph-rollback-button").count() == (1 if button else 0)
    page.context.close()


def test_rollback_asks_first_then_rolls_back(browser, market, shots):
    page = sized_page(browser, market, "desktop", ROLLER)
    import_id = market.ids["broker-feed"][0]
    page.goto(f"/-/glyph/imports/{import_id}")
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    page.click("#glyph-rollback-button")
    page.wait_for_timeout(300)
    rows = market.get(f"/glyph/scored_listings.json?import_id={import_id}&_shape=array&_size=max").json()
    assert len(rows) > 0 and len(questions) == 1
    assert questions[0].startswith("Roll back broker_daily.csv? This removes its ")
    page.once("dialog", lambda d: answer(d, True))
    with page.expect_navigation():
        page.click("#glyph-rollback-button")
    assert page.is_visible("#glyph-rolled-back")
    assert page.locator("#glyph-rollback-button").count() == 0
    assert page.locator("#glyph-batch-rows").count() == 0
    assert market.get(f"/glyph/scored_listings.json?import_id={import_id}&_shape=array").json() == []
    page.screenshot(path=shots / "16-rolled-back.png", full_page=True)
    page.context.close()


def test_compare_with_any_import(market_page, market):
    page = market_page
    ebay, broker = market.ids["ebay"], market.ids["broker-feed"]
    page.goto(f"/-/glyph/imports/{ebay[-1]}")
    assert page.input_value("#glyph-compare-with") == ebay[-2]  # the previous one from the same source
    page.select_option("#glyph-compare-with", broker[10])
    with page.expect_navigation() as answer:
        page.click("#glyph-compare input[type=submit]")
    assert answer.value.status == 200
    assert urlsplit(page.url).path == f"/-/glyph/imports/{broker[10]}/diff/{ebay[-1]}"


def test_accessibility_of_glyph_pages(market_page, market, width, shots):
    """Every control labelled, deltas legible, the upload page's focus order and live status."""
    page = market_page
    for name, path in glyph_pages(market).items():
        page.goto(path)
        unlabelled = page.evaluate("""Array.from(document.querySelectorAll(
                ".content input:not([type=hidden]):not([type=submit]), .content select, .content textarea"))
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id || e.name)""")
        assert unlabelled == [], name
        images = page.evaluate(
            "Array.from(document.querySelectorAll('[role=img]'))"
            ".filter(e => !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby')).length"
        )
        assert images == 0, name
        deltas = "'.glyph-up, .glyph-down, .glyph-up a, .glyph-down a'"
        ratios = page.evaluate(f"Array.from(document.querySelectorAll({deltas})).map({CONTRAST})")
        if name in ("diff", "history"):
            assert ratios, name
        assert all(r >= 4.5 for r in ratios), (name, min(ratios))
    # The upload page: the label on one line, the controls in reading order, a live status.
    page.goto("/-/glyph/import")
    label = page.eval_on_selector("label[for=glyph-file]", "l => l.getClientRects().length")
    assert label == 1
    order = []
    for _ in range(40):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id"))
        if order[-1] == "glyph-submit":
            break
    controls = [i for i in order if i.startswith("glyph-")]
    assert controls == ["glyph-file", "glyph-source", "glyph-description", "glyph-submit"]
    assert page.get_attribute("#glyph-status", "aria-live") == "polite"
    assert page.get_attribute("#glyph-status", "role") == "status"
    enabled = page.eval_on_selector("#glyph-submit", "b => getComputedStyle(b).backgroundColor")
    page.eval_on_selector("#glyph-submit", "b => { b.disabled = true; }")
    disabled = page.eval_on_selector(
        "#glyph-submit", "b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).cursor]"
    )
    assert disabled[0] != enabled and disabled[1] == "not-allowed"
    page.screenshot(path=shots / f"17-upload-{width}.png", full_page=True)
