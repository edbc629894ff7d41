"""Lineage over HTTP: the diff API and page, listing history API and page, and rollback with its permission."""

import re

import pytest
from datasette_test import actor_cookie

from datasette_glyph.engine.sqlite import connect

from .hand_market import (
    A_ID,
    ADDED_U6,
    API_A,
    API_B,
    API_C,
    B_ID,
    C_ID,
    CHANGED_U1,
    CHANGED_U5,
    DIFF_AB,
    REMOVED_U3,
    URL,
    insert_market,
    point,
    table_checksums,
)
from .json_style import refusal
from .snapshots import insert_snapshot
from .support import Tables, delete, error_message, make_ds, text_of

OPS = {"id": "ops"}
BOB = {"id": "bob"}


@pytest.fixture
def market_path(db_path):
    conn = connect(db_path)
    insert_market(conn)
    conn.close()
    return db_path


@pytest.mark.asyncio
async def test_diff_api(market_path):
    ds = await make_ds(market_path)
    response = await ds.client.get(f"/api/imports/{A_ID}/diff/{B_ID}")
    assert (response.status_code, response.json()) == (200, DIFF_AB)


DIFF_PATH = f"/api/imports/{A_ID}/diff/{B_ID}"


@pytest.mark.parametrize(
    "query, changes, total, next_url",
    [
        ("?limit=2", [CHANGED_U1, CHANGED_U5], 4, f"http://localhost{DIFF_PATH}?limit=2&offset=2"),
        ("?limit=2&offset=2", [ADDED_U6, REMOVED_U3], 4, None),
        ("?kind=changed&limit=1", [CHANGED_U1], 2, f"http://localhost{DIFF_PATH}?kind=changed&limit=1&offset=1"),
        ("?kind=changed&limit=1&offset=1", [CHANGED_U5], 2, None),
        ("?kind=added", [ADDED_U6], 1, None),
        ("?kind=removed&offset=0", [REMOVED_U3], 1, None),
        ("?kind=&limit=&offset=", [CHANGED_U1, CHANGED_U5, ADDED_U6, REMOVED_U3], 4, None),
        ("?offset=9", [], 4, None),
    ],
)
@pytest.mark.asyncio
async def test_diff_api_pages_and_filters(market_path, query, changes, total, next_url):
    ds = await make_ds(market_path)
    body = (await ds.client.get(DIFF_PATH + query)).json()
    assert (body["changes"], body["total"], body["next"]) == (changes, total, next_url)


@pytest.mark.parametrize(
    "query, error",
    [
        ("?limit=0", "limit: must be between 1 and 1000 (got '0')"),
        ("?limit=1001", "limit: must be between 1 and 1000 (got '1001')"),
        ("?limit=ten", "limit: must be an integer (got 'ten')"),
        ("?offset=-1", "offset: must be >= 0 (got '-1')"),
        ("?kind=moved", "kind: must be one of changed, added, removed (got 'moved')"),
    ],
)
@pytest.mark.asyncio
async def test_diff_api_rejects_bad_parameters(market_path, query, error):
    ds = await make_ds(market_path)
    response = await ds.client.get(DIFF_PATH + query)
    assert (response.status_code, response.json()) == (422, {"ok": False, "errors": [refusal(query, error)], "more": 0})


@pytest.mark.parametrize(
    "path",
    [f"/api/imports/{A_ID}/diff/nope", f"/api/imports/nope/diff/{B_ID}"],
)
@pytest.mark.asyncio
async def test_diff_api_of_an_unknown_import(market_path, path):
    ds = await make_ds(market_path)
    response = await ds.client.get(path)
    assert (response.status_code, response.json()) == (
        404,
        {"ok": False, "errors": [{"message": "No import with import_id 'nope'"}], "more": 0},
    )


@pytest.mark.asyncio
async def test_diff_api_of_imports_from_different_sources(market_path):
    ds = await make_ds(market_path)
    body = (await ds.client.get(f"/api/imports/{B_ID}/diff/{C_ID}")).json()
    assert (body["a"], body["b"], body["same_source"], body["listings"]) == (
        API_B,
        API_C,
        False,
        {
            "added": 1,
            "removed": 3,
            "changed": 1,
            "unchanged": 0,
            "without_source_url": {"a": 2, "b": 0},
            "duplicate_source_urls": {"a": 0, "b": 0},
        },
    )


@pytest.mark.asyncio
async def test_diff_page(market_path):
    ds = await make_ds(market_path)
    response = await ds.client.get(f"/-/glyph/imports/{A_ID}/diff/{B_ID}")
    assert response.status_code == 200
    html = response.text
    tables = Tables(html).tables
    assert tables["glyph-diff-models"] == [
        ["Model", "Rows A", "Rows B", "Δ rows", "Median A", "Median B", "Δ median", "Range A", "Range B"]
        + ["Mean score A", "Mean score B"],
        ["H100_PCIE_80GB", "2", "2", "0", "$21,000.00", "$20,500.00", "−$500.00", "$20,000–$22,000"]
        + ["$19,000–$22,000", "0.3750", "0.6250"],
        ["L40S", "–", "3", "+3", "–", "$7,500.00", "–", "–", "$7,000–$8,000", "–", "0.5000"],
        ["RTX_4090", "4", "1", "−3", "$1,900.00", "$2,200.00", "+$300.00", "$1,600–$2,100", "$2,200–$2,200"]
        + ["0.5625", "0.5000"],
    ]
    assert tables["glyph-diff-changes"] == [
        ["Change", "source_url", "Model", "Old price", "New price", "Δ", "Δ %"],
        ["changed", URL + "u1", "H100_PCIE_80GB", "$20,000.00", "$19,000.00", "−$1,000.00", "−5.00%"],
        ["changed", URL + "u5", "RTX_4090", "$2,100.00", "$2,200.00", "+$100.00", "+4.76%"],
        ["added", URL + "u6", "L40S", "–", "$8,000.00", "–", "–"],
        ["removed", URL + "u3", "RTX_4090", "$1,800.00", "–", "–", "–"],
    ]
    assert text_of(html, "glyph-diff-counts") == (
        "Matched by source_url: 2 changed price, 1 added, 1 removed, 1 unchanged. Rows without a source_url "
        "(counted, not matched): 1 in A, 2 in B. Rows that repeat a source_url within their import (the last one "
        "counts): 1 in A, 0 in B."
    )
    assert text_of(html, "glyph-diff-kinds") == "all changes (4) changed (2) added (1) removed (1)"
    assert re.findall(r'<a href="([^"]+)" title="price history of this listing">', html) == [
        "/-/glyph/history?source_url=https%3A%2F%2Fmarket.example%2Flisting%2F" + u for u in ("u1", "u5", "u6", "u3")
    ]
    assert 'id="glyph-diff-sources"' not in html  # same source: no note


@pytest.mark.parametrize(
    "query, rows, pager",
    [
        ("?limit=1", [URL + "u1"], ["next: ?limit=1&offset=1"]),
        ("?limit=1&offset=2", [URL + "u6"], ["previous: ?limit=1&offset=1", "next: ?limit=1&offset=3"]),
        ("?limit=3&offset=1", [URL + "u5", URL + "u6", URL + "u3"], ["previous: ?limit=3"]),
        ("?kind=removed", [URL + "u3"], []),
    ],
)
@pytest.mark.asyncio
async def test_diff_page_pages(market_path, query, rows, pager):
    ds = await make_ds(market_path)
    html = (await ds.client.get(f"/-/glyph/imports/{A_ID}/diff/{B_ID}" + query)).text
    assert [row[1] for row in Tables(html).tables["glyph-diff-changes"][1:]] == rows
    links = re.findall(r'<a href="[^"?]*(\?[^"]*)" id="glyph-diff-(previous|next)-page">', html)
    assert [f"{which}: {href.replace('&amp;', '&')}" for href, which in links] == pager


@pytest.mark.parametrize(
    "path, status",
    [
        (f"/-/glyph/imports/{A_ID}/diff/nope", 404),
        (f"/-/glyph/imports/nope/diff/{A_ID}", 404),
        (f"/-/glyph/imports/{A_ID}/diff/{B_ID}?kind=moved", 400),
        (f"/-/glyph/imports/{A_ID}/diff/{B_ID}?limit=0", 400),
    ],
)
@pytest.mark.asyncio
async def test_diff_page_errors(market_path, path, status):
    ds = await make_ds(market_path)
    assert (await ds.client.get(path)).status_code == status


@pytest.mark.asyncio
async def test_diff_page_notes_different_sources(market_path):
    ds = await make_ds(market_path)
    html = (await ds.client.get(f"/-/glyph/imports/{A_ID}/diff/{C_ID}")).text
    assert text_of(html, "glyph-diff-sources") == "These imports come from different sources (market and broker)."


HISTORY_U1 = [
    point(API_A, 1, "H100_PCIE_80GB", 20000.0, 0.5, None),
    point(API_B, 2, "H100_PCIE_80GB", 19000.0, 0.75, -1000.0),
    point(API_C, 1, "RTX_4090", 1500.0, 1.0, -17500.0),
]


@pytest.mark.parametrize(
    "query, status, body",
    [
        (
            "?source_url=" + URL + "u1",
            200,
            {"ok": True, "source_url": URL + "u1", "history": HISTORY_U1, "limit": 100, "offset": 0, "next": None},
        ),
        (
            "?source_url=" + URL + "u1&limit=2",
            200,
            {
                "ok": True,
                "source_url": URL + "u1",
                "history": HISTORY_U1[:2],
                "limit": 2,
                "offset": 0,
                "next": "http://localhost/api/listings/history?source_url=https%3A%2F%2Fmarket.example%2Flisting%2Fu1"
                "&limit=2&offset=2",
            },
        ),
        (
            "?source_url=" + URL + "u1&limit=2&offset=2",
            200,
            {"ok": True, "source_url": URL + "u1", "history": HISTORY_U1[2:], "limit": 2, "offset": 2, "next": None},
        ),
        (
            "?source_url=" + URL + "u1&limit=1&offset=1",
            200,
            {
                "ok": True,
                "source_url": URL + "u1",
                "history": HISTORY_U1[1:2],
                "limit": 1,
                "offset": 1,
                "next": "http://localhost/api/listings/history?source_url=https%3A%2F%2Fmarket.example%2Flisting%2Fu1"
                "&limit=1&offset=2",
            },
        ),
        (
            "?source_url=nowhere",
            200,
            {"ok": True, "source_url": "nowhere", "history": [], "limit": 100, "offset": 0, "next": None},
        ),
        (
            "?source_url=x&limit=0",
            422,
            {
                "ok": False,
                "errors": [
                    {"message": "limit: must be between 1 and 1000 (got '0')", "parameter": "limit", "value": "0"}
                ],
                "more": 0,
            },
        ),
        (
            "",
            400,
            {
                "ok": False,
                "errors": [{"message": "source_url is required, e.g. /api/listings/history?source_url=https://..."}],
                "more": 0,
            },
        ),
        (
            "?source_url=",
            400,
            {
                "ok": False,
                "errors": [{"message": "source_url is required, e.g. /api/listings/history?source_url=https://..."}],
                "more": 0,
            },
        ),
    ],
)
@pytest.mark.asyncio
async def test_history_api(market_path, query, status, body):
    ds = await make_ds(market_path)
    response = await ds.client.get("/api/listings/history" + query)
    assert (response.status_code, response.json()) == (status, body)


@pytest.mark.asyncio
async def test_history_page_draws_price_and_score_inline(market_path):
    ds = await make_ds(market_path)
    html = (await ds.client.get("/-/glyph/history?source_url=" + URL + "u1")).text
    assert Tables(html).tables["glyph-history-table"] == [
        ["Imported at", "Import", "Source", "Model", "Price", "Δ", "Score", "Row"],
        ["2025-05-01 10:00:00 UTC", "a.csv", "market", "H100_PCIE_80GB", "$20,000.00", "–", "0.5000", "1"],
        ["2025-05-02 10:00:00 UTC", "b.csv", "market", "H100_PCIE_80GB", "$19,000.00", "−$1,000.00", "0.7500", "2"],
        ["2025-05-03 10:00:00 UTC", "c.csv", "broker", "RTX_4090", "$1,500.00", "−$17,500.00", "1.0000", "1"],
    ]
    charts = re.findall(r'<div id="(glyph-history-\w+)".*?<polyline points="([^"]+)">', html, re.DOTALL)
    # a 1000 x 1000 box stretched over the plot, 0 at the bottom: prices up to a $20,000 top, scores up to 1
    assert charts == [
        ("glyph-history-price", "0,0 500,50 1000,925"),
        ("glyph-history-score", "0,500 500,250 1000,0"),
    ]
    # Works offline: every script and stylesheet is served by Datasette itself, none from elsewhere.
    assert re.findall(r'<(?:script|link)[^>]+(?:src|href)="(?:https?:)?//', html) == []
    diff_links = re.findall(r'<a href="(/-/glyph/imports/[^"]+/diff/[^"]+)"', html)
    assert diff_links == [f"/-/glyph/imports/{A_ID}/diff/{B_ID}", f"/-/glyph/imports/{B_ID}/diff/{C_ID}"]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", None),
        ("?source_url=nowhere", "No import has a listing with source_url nowhere."),
    ],
)
@pytest.mark.asyncio
async def test_history_page_without_a_history(market_path, query, expected):
    ds = await make_ds(market_path)
    response = await ds.client.get("/-/glyph/history" + query)
    assert response.status_code == 200
    found = text_of(response.text, "glyph-history-none") if 'id="glyph-history-none"' in response.text else None
    assert found == expected
    assert '<form class="glyph-history-form"' in response.text


@pytest.mark.asyncio
async def test_history_page_escapes_the_url_and_links_only_web_addresses(db_path):
    conn = connect(db_path)
    evil = 'javascript:alert("x")//<b>'
    insert_snapshot(conn, [{"canonical_model": "L4", "price": 10.0, "score": 0.5, "source_url": evil}], "e1")
    conn.close()
    ds = await make_ds(db_path)
    html = (await ds.client.get("/-/glyph/history", params={"source_url": evil})).text
    assert "<b>" not in html
    assert 'href="javascript' not in html
    assert (
        text_of(html, "glyph-history-summary")
        == "javascript:alert(&#34;x&#34;)//&lt;b&gt; is in 1 import, oldest first · JSON"
    )


@pytest.mark.asyncio
async def test_lineage_routes_do_not_swallow_other_routes(market_path):
    ds = await make_ds(market_path)
    detail = await ds.client.get(f"/api/imports/{A_ID}")
    listings = await ds.client.get("/api/listings", params={"import_id": C_ID})
    assert (detail.status_code, detail.json()["import_id"]) == (200, A_ID)
    assert (listings.status_code, [r["import_index"] for r in listings.json()]) == (200, [1, 2])
    wrong = await ds.client.get(f"/api/imports/{A_ID}/diff/{B_ID}/extra")
    assert (wrong.status_code, error_message(wrong.text)) == (404, "404")  # Datasette's own, not the plugin's


@pytest.mark.parametrize(
    "path",
    [
        f"/api/imports/{A_ID}/diff/{B_ID}",
        "/api/listings/history?source_url=x",
    ],
)
@pytest.mark.asyncio
async def test_lineage_api_needs_the_tables_visible(market_path, path):
    ds = await make_ds(market_path, metadata={"databases": {"glyph": {"allow": {"id": "alice"}}}})
    response = await ds.client.get(path)
    assert (response.status_code, response.json()) == (
        403,
        {"ok": False, "errors": [{"message": "You may not view import_batches"}], "more": 0},
    )
    allowed = await ds.client.get(path, cookies={"ds_actor": actor_cookie(ds, {"id": "alice"})})
    assert (allowed.status_code, allowed.json()["ok"]) == (200, True)


@pytest.mark.parametrize("path", [f"/-/glyph/imports/{A_ID}/diff/{B_ID}", "/-/glyph/history?source_url=x"])
@pytest.mark.asyncio
async def test_lineage_pages_need_the_tables_visible(market_path, path):
    ds = await make_ds(market_path, metadata={"databases": {"glyph": {"allow": {"id": "alice"}}}})
    response = await ds.client.get(path)
    assert (response.status_code, error_message(response.text)) == (403, "You may not view glyph/import_batches")


# Rollback ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "actor, error",
    [
        (None, "An anonymous request may not roll back imports: the glyph-rollback permission is required"),
        (BOB, "Actor 'bob' may not roll back imports: the glyph-rollback permission is required"),
    ],
)
@pytest.mark.asyncio
async def test_rollback_needs_the_permission(market_path, actor, error):
    ds = await make_ds(market_path, allow_rollback={"id": "ops"})
    before = table_checksums(market_path)
    response = await delete(ds, f"/api/imports/{B_ID}", actor)
    assert (response.status_code, response.json()) == (403, {"ok": False, "errors": [{"message": error}], "more": 0})
    assert table_checksums(market_path) == before


@pytest.mark.asyncio
async def test_rollback_api(market_path):
    ds = await make_ds(market_path, allow_rollback={"id": "ops"})
    others = table_checksums(market_path, "import_id <> ?", [B_ID])
    response = await delete(ds, f"/api/imports/{B_ID}", OPS)
    body = response.json()
    assert (response.status_code, body) == (
        200,
        {
            "ok": True,
            "import_id": B_ID,
            "status": "rolled_back",
            "rolled_back_at": body["rolled_back_at"],
            "rolled_back_by": "ops",
            "removed": {"scored_listings": 6, "listings": 0, "quantized_listings": 0, "models": 1},
        },
    )
    record = (await ds.client.get(f"/api/imports/{B_ID}")).json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["rolled_back_at"])
    not_kept = {"file_kept": False, "file_bytes": None, "file_stored_bytes": None, "reimport_of": None}
    assert record == dict(
        API_B,
        **not_kept,  # the market's batches are written directly, without their files
        ok=True,
        status="rolled_back",
        rolled_back_at=body["rolled_back_at"],
        rolled_back_by="ops",
        models=[],
    )
    assert table_checksums(market_path, "import_id <> ?", [B_ID]) == others
    again = await delete(ds, f"/api/imports/{B_ID}", OPS)
    assert (again.status_code, again.json()) == (
        409,
        {
            "ok": False,
            "errors": [{"message": f"Import {B_ID} was already rolled back at {body['rolled_back_at']} by ops"}],
            "more": 0,
        },
    )
    unknown = await delete(ds, "/api/imports/nope", OPS)
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"ok": False, "errors": [{"message": "No import with import_id 'nope'"}], "more": 0},
    )


@pytest.mark.asyncio
async def test_rollback_that_fails_part_way_changes_nothing(market_path):
    conn = connect(market_path)
    conn.execute("CREATE TABLE deletes (n INTEGER)")
    conn.execute("INSERT INTO deletes VALUES (0)")
    conn.execute(
        "CREATE TRIGGER fail_part_way BEFORE DELETE ON scored_listings BEGIN UPDATE deletes SET n = n + 1; "
        "SELECT RAISE(ABORT, 'disk on fire') WHERE (SELECT n FROM deletes) >= 4; END"
    )
    conn.close()
    ds = await make_ds(market_path, allow_rollback={"id": "ops"})
    before = table_checksums(market_path)
    response = await delete(ds, f"/api/imports/{B_ID}", OPS)
    assert (response.status_code, response.json()) == (
        500,
        {
            "ok": False,
            "errors": [{"message": f"Rollback of {B_ID} failed: disk on fire. Nothing was changed."}],
            "more": 0,
        },
    )
    assert table_checksums(market_path) == before
    # and the write connection is usable afterwards: with the trigger gone, the same rollback goes through
    conn = connect(market_path)
    conn.execute("DROP TRIGGER fail_part_way")
    conn.close()
    response = await delete(ds, f"/api/imports/{B_ID}", OPS)
    answer = response.json()
    assert (response.status_code, answer.pop("rolled_back_at")[:2], answer) == (
        200,
        "20",
        {
            "ok": True,
            "import_id": B_ID,
            "status": "rolled_back",
            "rolled_back_by": "ops",
            "removed": {"scored_listings": 6, "listings": 0, "quantized_listings": 0, "models": 1},
        },
    )


@pytest.mark.asyncio
async def test_diff_api_accepts_only_get(market_path):
    ds = await make_ds(market_path, allow_rollback={"id": "ops"})
    response = await delete(ds, f"/api/imports/{A_ID}/diff/{B_ID}", OPS)
    assert (response.status_code, response.json()) == (
        405,
        {"ok": False, "errors": [{"message": "DELETE is not allowed here; use GET"}], "more": 0},
    )
