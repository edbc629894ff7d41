"""Every ``import_id`` (and ``previous_import_id``) cell on Datasette's table pages of the glyph tables links to a
page that exists: the import's own page, never ``/<db>/import_batches/<uuid>`` (import_id is not a primary key)."""

import re
from html import unescape
from pathlib import Path

import pytest
from datasette_test import Datasette

from datasette_glyph.engine.importer import import_csv

REPO = Path(__file__).resolve().parent.parent

TABLES = {
    "scored_listings": ["import_id"],
    "models": ["import_id"],
    "import_batches": ["import_id"],
    "import_model_stats": ["import_id"],
    "import_deltas": ["import_id", "previous_import_id"],
    "import_delta_models": ["import_id", "previous_import_id"],
}


@pytest.mark.asyncio
async def test_import_id_links_on_every_table_page_lead_to_the_import(conn, db_path):
    first = import_csv(conn, REPO / "sample" / "scored_sample.csv", source_name="market").import_id
    second = import_csv(conn, REPO / "sample" / "scored_sample_next.csv", source_name="market").import_id
    ds = Datasette([str(db_path)])
    await ds.invoke_startup()
    followed = {}
    for table, columns in TABLES.items():
        page = await ds.client.get(f"/glyph/{table}?_size=5")
        assert page.status_code == 200, table
        for column in columns:
            cells = re.findall(rf'<td class="col-{column} [^"]*"[^>]*>(.*?)</td>', page.text, re.DOTALL)
            links = [unescape(href) for cell in cells for href in re.findall(r'href="([^"]*)"', cell)]
            assert links and len(links) == len(cells), (table, column, cells[:2])
            for link in links:
                followed[(table, column, link)] = (await ds.client.get(link)).status_code
    assert {status for status in followed.values()} == {200}
    assert {link for _, _, link in followed} <= {f"/-/glyph/imports/{first}", f"/-/glyph/imports/{second}"}
