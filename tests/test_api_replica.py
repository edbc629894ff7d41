"""Replica mode: a server configured ``read_only`` (or serving an immutable database) refuses every write with a
JSON 503 naming the primary, attempts no write, offers no upload page or link, and never migrates at startup."""

import hashlib
import json
import re
import sqlite3
from pathlib import Path

import pytest
from datasette_test import Datasette, actor_cookie

from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect

from .hand_market import A_ID, insert_market

PRIMARY = "https://glyph-primary.example.com"
OPERATOR = {"id": "operator"}
WRITER_CONFIG = {"allow_import": True, "allow_rollback": True}
CSV = b"canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score\r\nL40S,48,0,False,350,7500.0,0.6\r\n"
BOUNDARY = "replicaboundary"
MULTIPART = (
    (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="prices.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    + CSV
    + f"\r\n--{BOUNDARY}--\r\n".encode()
)
RECORDS = [
    {"canonical_model": "L40S", "vram_gb": 48, "mig_support": 0, "nvlink": False, "tdp_watts": 350, "price": 7500.0,
     "score": 0.6, "import_id": None, "import_index": None}
]  # fmt: skip

NAMED = {
    "ok": False,
    "errors": [{"message": f"This server is read-only; send imports and rollbacks to {PRIMARY}"}],
    "more": 0,
    "primary_url": PRIMARY,
}
UNNAMED = {
    "ok": False,
    "errors": [
        {
            "message": "This server is read-only (a replica or an immutable database); send imports and rollbacks "
            "to the primary"
        }
    ],
    "more": 0,
    "primary_url": None,
}


@pytest.fixture
def market_path(db_path):
    conn = connect(db_path)
    insert_market(conn)
    conn.close()
    return db_path


def file_digest(path) -> str:
    """SHA-256 of the database file and of its WAL: a write of any kind would change one of them. (A reader may
    create an empty WAL file; that is no write.)"""
    digest = hashlib.sha256(Path(path).read_bytes())
    wal = Path(str(path) + "-wal")
    digest.update(wal.read_bytes() if wal.exists() else b"")
    return digest.hexdigest()


async def replica(path, immutable=False, **config):
    settings = {**WRITER_CONFIG, **config}
    files = {"immutables": [str(path)]} if immutable else {"files": [str(path)]}
    ds = Datasette(**files, plugin_config={"datasette-glyph": settings})
    await ds.invoke_startup()
    return ds


WRITES = [
    ("POST", "/api/import", {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}, MULTIPART),
    ("POST", "/api/import", {"content-type": "application/json"}, json.dumps(RECORDS).encode()),
    ("DELETE", f"/api/imports/{A_ID}", {}, b""),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("method,path,headers,body", WRITES)
@pytest.mark.parametrize(
    "how,config,expected",
    [
        ("read_only with a primary", {"read_only": True, "primary_url": PRIMARY}, NAMED),
        ("read_only without one", {"read_only": True}, UNNAMED),
        ("immutable with a primary", {"primary_url": PRIMARY, "immutable": True}, NAMED),
        ("immutable without one", {"immutable": True}, UNNAMED),
    ],
)
async def test_every_write_is_refused_with_a_503_naming_the_primary(
    market_path, method, path, headers, body, how, config, expected
):
    config = dict(config)
    ds = await replica(market_path, immutable=config.pop("immutable", False), **config)
    before = file_digest(market_path)
    response = await ds.client.request(method, path, headers=headers, content=body)
    assert (response.status_code, response.json()) == (503, expected)
    assert file_digest(market_path) == before


@pytest.mark.asyncio
async def test_a_replica_still_serves_reads(market_path):
    ds = await replica(market_path, read_only=True, primary_url=PRIMARY)
    batch = await ds.client.get(f"/api/imports/{A_ID}")
    listings = await ds.client.get(f"/api/listings?import_id={A_ID}&limit=1")
    assert (batch.status_code, batch.json()["import_id"], listings.status_code, len(listings.json())) == (
        200,
        A_ID,
        200,
        1,
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "config,message",
    [
        ({"read_only": True, "primary_url": PRIMARY}, NAMED["errors"][0]["message"]),
        ({"immutable": True}, UNNAMED["errors"][0]["message"]),
    ],
)
async def test_a_replica_offers_no_upload_page_or_link(market_path, config, message):
    config = dict(config)
    ds = await replica(market_path, immutable=config.pop("immutable", False), **config)
    cookies = {"ds_actor": actor_cookie(ds, OPERATOR)}
    upload = await ds.client.get("/-/glyph/import", cookies=cookies)
    pages = [
        (await ds.client.get(path, cookies=cookies)).text
        for path in ("/", "/glyph/scored_listings", "/-/glyph/imports")
    ]
    links = [re.findall(r'href="(/-/glyph/import)"', html) for html in pages]
    assert (upload.status_code, message in upload.text, links) == (503, True, [[], [], []])


@pytest.mark.asyncio
async def test_a_writable_server_offers_the_upload_page_and_link(market_path):
    ds = await replica(market_path)
    cookies = {"ds_actor": actor_cookie(ds, OPERATOR)}
    upload = await ds.client.get("/-/glyph/import", cookies=cookies)
    pages = [
        (await ds.client.get(path, cookies=cookies)).text
        for path in ("/", "/glyph/scored_listings", "/-/glyph/imports")
    ]
    links = [re.findall(r'href="(/-/glyph/import)"', html)[:1] for html in pages]
    assert (upload.status_code, links) == (200, [["/-/glyph/import"]] * 3)


@pytest.mark.asyncio
async def test_a_read_only_server_does_not_migrate_at_startup(tmp_path, capsys):
    path = tmp_path / "glyph.db"
    sqlite3.connect(path).execute("VACUUM")  # what datasette --create makes: a file with no tables
    before = file_digest(path)
    await replica(path, read_only=True, migrate=True)
    conn = sqlite3.connect(path)
    version = migrator.current_version(conn)
    conn.close()
    assert (version, file_digest(path), capsys.readouterr().err.splitlines()) == (
        None,
        before,
        ["datasette-glyph: glyph is read-only; not migrating it"],
    )
