"""POST /api/persist/listings: the old store's JSON import URL, answered as POST /api/import answers, with the
old ``detail`` key on errors."""

import json
import re
import sqlite3

import pytest
from datasette_test import actor_cookie

from .support import TOKEN_CSRF, make_ds, with_csrf_token

# The old listing DTO: the seven required fields, lineage null.
DTO = {
    "canonical_model": "L40S",
    "vram_gb": 48,
    "mig_support": 0,
    "nvlink": False,
    "tdp_watts": 350,
    "price": 7500.0,
    "score": 0.6,
    "import_id": None,
    "import_index": None,
}
JSON = {"content-type": "application/json"}


async def serve(db_path, upload_folder=None, **config):
    return await make_ds(db_path, **{"allow_import": {"id": "alice"}, **config})


async def post(ds, records, actor="alice", headers=None):
    """Post as a signed-in browser would (on 0.65 with the CSRF token in a header), or anonymously."""
    cookies = {"ds_actor": actor_cookie(ds, {"id": actor})} if actor else {}
    headers = {**JSON, **(headers or {})}
    body = records if isinstance(records, bytes) else json.dumps(records).encode()
    if actor:
        await with_csrf_token(ds, cookies, headers)
    return await ds.client.post("/api/persist/listings", content=body, headers=headers, cookies=cookies)


def rows(db_path):
    conn = sqlite3.connect(db_path)
    found = conn.execute(
        "SELECT import_id, import_index, canonical_model, price FROM scored_listings ORDER BY id"
    ).fetchall()
    conn.close()
    return found


@pytest.mark.asyncio
async def test_the_old_payload_imports_with_server_assigned_lineage(db_path):
    ds = await serve(db_path)
    records = [DTO, dict(DTO, canonical_model="RTX_4090", price=1799.0)]
    response = await post(ds, records)
    body = response.json()
    assert (response.status_code, body["ok"], body["record_count"], body["first_model"], body["last_model"]) == (
        200,
        True,
        2,
        "L40S",
        "RTX_4090",
    )
    assert (body["ignored_columns"], body["actor"], re.fullmatch(r".*T.*Z", body["timestamp"]) is not None) == (
        [],
        "alice",
        True,
    )
    import_id = body["import_id"]
    assert rows(db_path) == [(import_id, 1, "L40S", 7500.0), (import_id, 2, "RTX_4090", 1799.0)]


@pytest.mark.asyncio
async def test_client_sent_lineage_is_refused_and_nothing_is_written(db_path):
    ds = await serve(db_path)
    records = [DTO, dict(DTO, import_id="mine"), dict(DTO, import_index=7)]
    response = await post(ds, records)
    message_2 = 'Record 2, column import_id: lineage is assigned by the server; send null, not "mine"'
    message_3 = "Record 3, column import_index: lineage is assigned by the server; send null, not 7"
    assert (response.status_code, response.json()) == (
        422,
        {
            "ok": False,
            "errors": [
                {"message": message_2, "line": None, "column": "import_id", "value": '"mine"'},
                {"message": message_3, "line": None, "column": "import_index", "value": "7"},
            ],
            "more": 0,
            "detail": [
                {"loc": ["body", 1, "import_id"], "msg": message_2, "type": "value_error"},
                {"loc": ["body", 2, "import_index"], "msg": message_3, "type": "value_error"},
            ],
        },
    )
    assert rows(db_path) == []


@pytest.mark.asyncio
async def test_validation_errors_carry_detail_with_loc_and_msg(db_path):
    ds = await serve(db_path)
    response = await post(ds, [DTO, dict(DTO, price=-1)])
    body = response.json()
    assert (response.status_code, body["detail"]) == (
        422,
        [{"loc": ["body", 1, "price"], "msg": body["errors"][0]["message"], "type": "value_error"}],
    )
    assert (body["errors"][0]["column"], rows(db_path)) == ("price", [])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "records,actor,status,message",
    [
        ([], "alice", 422, "No records to import: the list is empty"),
        (b"{not json", "alice", 400, None),
        ([DTO], None, 403, "An anonymous request may not import: the glyph-import permission is required"),
        ([DTO], "bob", 403, "Actor 'bob' may not import: the glyph-import permission is required"),
    ],
)
async def test_other_errors_carry_detail_as_a_message(db_path, records, actor, status, message):
    ds = await serve(db_path)
    response = await post(ds, records, actor=actor)
    body = response.json()
    message = message or body["errors"][0]["message"]
    expected_detail = [{"loc": ["body"], "msg": message, "type": "value_error"}] if status == 422 else message
    assert (response.status_code, body["errors"][0]["message"], body["detail"], rows(db_path)) == (
        status,
        message,
        expected_detail,
        [],
    )


@pytest.mark.asyncio
async def test_only_json_and_only_post(db_path):
    ds = await serve(db_path)
    form = await post(ds, b"a=b", headers={"content-type": "application/x-www-form-urlencoded"})
    get = await ds.client.get("/api/persist/listings")
    assert (form.status_code, form.json()["detail"], get.status_code, get.headers["allow"], get.json()["detail"]) == (
        400,
        "Send a JSON array of listing objects as application/json; got Content-Type "
        "'application/x-www-form-urlencoded'",
        405,
        "POST",
        "GET is not allowed here; use POST",
    )


@pytest.mark.asyncio
async def test_a_read_only_server_refuses_with_detail(db_path):
    ds = await serve(db_path, read_only=True, primary_url="https://primary.example")
    response = await post(ds, [DTO])
    message = "This server is read-only; send imports and rollbacks to https://primary.example"
    assert (response.status_code, response.json()) == (
        503,
        {
            "ok": False,
            "errors": [{"message": message}],
            "more": 0,
            "primary_url": "https://primary.example",
            "detail": message,
        },
    )


@pytest.mark.skipif(not TOKEN_CSRF, reason="Datasette 1.0a has no CSRF tokens; it checks Origin instead")
@pytest.mark.asyncio
async def test_a_cookie_authenticated_post_needs_the_csrf_header_as_for_api_import(db_path):
    ds = await serve(db_path)
    cookies = {"ds_actor": actor_cookie(ds, {"id": "alice"})}
    cookies["ds_csrftoken"] = (await ds.client.get("/", cookies=cookies)).cookies["ds_csrftoken"]
    response = await ds.client.post(
        "/api/persist/listings", content=json.dumps([DTO]).encode(), headers=JSON, cookies=cookies
    )
    assert (response.status_code, response.json()["errors"], rows(db_path)) == (
        403,
        [{"message": "CSRF check failed: send the ds_csrftoken cookie's value in an X-CSRFToken header"}],
        [],
    )


@pytest.mark.skipif(TOKEN_CSRF, reason="Datasette 0.65 checks CSRF tokens, not Origin")
@pytest.mark.asyncio
async def test_a_cross_site_post_is_refused_as_for_api_import(db_path):
    ds = await serve(db_path)
    response = await post(ds, [DTO], headers={"sec-fetch-site": "cross-site", "origin": "https://evil.example"})
    assert (response.status_code, rows(db_path)) == (403, [])
