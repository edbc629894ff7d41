"""Import ids the old store wrote freely (spaces, slashes, percent signs, unicode) are reachable by every URL that
takes one, and the links the pages make lead to them."""

import re
from html import unescape
from urllib.parse import quote

import pytest

from datasette_glyph.engine.sqlite import connect

from .snapshots import insert_snapshot
from .support import delete, make_ds

ODD_IDS = ["nightly 2024/05/01", "50% off?#x", "ünï/cödé"]
OTHER = "aaaaaaaa-0000-4000-8000-000000000001"


@pytest.fixture
def odd_path(db_path):
    conn = connect(db_path)
    insert_snapshot(conn, [{"canonical_model": "L40S", "price": 7000.0, "score": 0.5, "source_url": "u1"}], OTHER,
                    imported_at="2024-04-30 00:00:00", filename="other.csv")  # fmt: skip
    for n, import_id in enumerate(ODD_IDS):
        rows = [{"canonical_model": "L40S", "price": 7500.0 + n, "score": 0.5, "source_url": "u1"}]
        insert_snapshot(conn, rows, import_id, imported_at=f"2024-05-0{n + 1} 00:00:00", filename=f"{n}.csv")
    conn.close()
    return db_path


def serve(path):
    return make_ds(path, allow_rollback={"id": "ops"})


@pytest.mark.asyncio
@pytest.mark.parametrize("import_id", ODD_IDS)
async def test_get_diff_and_delete_reach_an_id_that_needs_escaping(odd_path, import_id):
    ds = await serve(odd_path)
    escaped = quote(import_id, safe="")
    record = await ds.client.get(f"/api/imports/{escaped}")
    diff = await ds.client.get(f"/api/imports/{quote(OTHER)}/diff/{escaped}")
    page = await ds.client.get(f"/-/glyph/imports/{escaped}")
    diff_page = await ds.client.get(f"/-/glyph/imports/{escaped}/diff/{quote(OTHER)}")
    assert (record.status_code, record.json()["import_id"], diff.status_code, diff.json()["b"]["import_id"]) == (
        200,
        import_id,
        200,
        import_id,
    )
    assert (page.status_code, diff_page.status_code) == (200, 200)
    deleted = await delete(ds, f"/api/imports/{escaped}", {"id": "ops"})
    assert (deleted.status_code, deleted.json()["import_id"], deleted.json()["removed"]["scored_listings"]) == (
        200,
        import_id,
        1,
    )


@pytest.mark.asyncio
async def test_the_imports_page_links_to_each_batch_page(odd_path):
    ds = await serve(odd_path)
    html = (await ds.client.get("/-/glyph/imports")).text
    links = sorted({unescape(h) for h in re.findall(r'href="(/-/glyph/imports/[^"]+)"', html)})
    answers = [(await ds.client.get(link)).status_code for link in links]
    assert (len(links), answers) == (len(ODD_IDS) + 1, [200] * (len(ODD_IDS) + 1))
