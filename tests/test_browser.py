"""The pages in a real browser: headless Chromium against a real ``datasette`` server process.

Upload through the page (file picker, drag and drop, progress bar), follow the result to the rows, apply the
import_id facet, open the batch page and its chart; errors shown row by row; what an anonymous visitor sees.
Each step saves a screenshot; the folder is printed at the start of the run.
"""

import contextlib
import csv
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from datasette_glyph import migrate
from datasette_glyph.db import connect

from .browser_support import REPO, actor_cookie, chromium, require_browser, screenshot_dir
from .server import running_server

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
    migrate.migrate(conn)
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

    # A second import of the same file from the same source, then pick the first one in the import_id facet.
    page.goto("/-/glyph/import")
    second = upload(page, SAMPLE, "ebay", "Tuesday's file")
    assert second["record_count"] == len(expected_rows)
    page.goto("/glyph/scored_listings?_nosuggest=1")
    assert re.match(r"[\d,]+", page.inner_text("h3")).group() == str(2 * len(expected_rows))
    facet_links = page.locator(f'.facet-info a[href*="import_id={first["import_id"]}"]')
    label = server.get(f"/glyph/import_batches.json?import_id={first['import_id']}&_shape=array").json()[0]["label"]
    assert re.match(r"^scored_sample\.csv · \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", label)
    assert facet_links.all_inner_texts() == [label]
    facet_links.click()
    page.wait_for_url(re.compile(rf".*import_id={first['import_id']}.*"))
    assert query(page.url)["import_id"] == first["import_id"]
    assert re.match(r"\d+", page.inner_text("h3")).group() == str(len(expected_rows))
    page.screenshot(path=shots / "04-facet-applied.png", full_page=True, clip=TOP_OF_PAGE)

    # The list of imports, newest first, leads to the batch page and its chart.
    page.goto("/-/glyph/imports")
    batches = server.get("/glyph/import_batches.json?_shape=array&_sort_desc=id").json()
    assert table_cells(page, "#glyph-imports tbody") == [
        [b["filename"], b["source"], b["imported_at"], str(b["record_count"]), b["status"], b["actor"]] for b in batches
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
    chart = page.locator("svg#glyph-price-chart")
    assert chart.is_visible()
    assert (
        page.eval_on_selector_all(
            "svg#glyph-price-chart g.model > text:first-of-type", "ts => ts.map(t => t.textContent)"
        )
        == models
    )
    assert [row[0] for row in table_cells(page, "#glyph-model-summary tbody")] == models
    assert page.get_attribute("#glyph-diff-previous", "href") == (
        f"/-/glyph/imports/{first['import_id']}/diff/{second['import_id']}"
    )
    page.screenshot(path=shots / "06-batch-page.png", full_page=True)
    chart.screenshot(path=shots / "07-price-chart.png")
    with page.expect_navigation() as diff:
        page.click("#glyph-diff-previous")
    assert diff.value.status == 200


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
    assert response.status == 403
    page.screenshot(path=shots / "09-anonymous-forbidden.png")
    assert page.goto("/-/glyph/imports").status == 200
