"""glyph-import and glyph-rollback: denied by default, granted to root and to the plugin config's allow blocks,
on Datasette 0.65 and 1.0a alike; Bearer-token clients and CSRF for cookie-authenticated browsers."""

import functools
import inspect

import pytest
from datasette_test import actor_cookie

from datasette_glyph.web.permissions import can_import, can_rollback

from . import support
from .support import TOKEN_CSRF, with_csrf_token

# 0.65 protects POSTs with asgi-csrf tokens; 1.0a with the Origin / Sec-Fetch-Site headers

ALICE = {"id": "alice"}
BOB = {"id": "bob"}
ROOT = {"id": "root"}
IMPORTER = {"id": "carol", "roles": ["importer"]}


make_ds = functools.partial(support.make_ds, root=True)  # root: what --root does on 1.0a


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "config,actor,expected",
    [
        # nothing configured: only root
        ({}, None, (False, False)),
        ({}, ALICE, (False, False)),
        ({}, ROOT, (True, True)),
        # an allow block per action
        ({"allow_import": {"id": ["alice"]}}, ALICE, (True, False)),
        ({"allow_import": {"id": ["alice"]}}, BOB, (False, False)),
        ({"allow_import": {"id": ["alice"]}}, None, (False, False)),
        ({"allow_import": {"id": ["alice"]}}, ROOT, (True, True)),
        ({"allow_rollback": {"id": "alice"}}, ALICE, (False, True)),
        ({"allow_import": {"id": "*"}, "allow_rollback": {"id": ["alice"]}}, BOB, (True, False)),
        ({"allow_import": {"id": "*"}}, None, (False, False)),
        ({"allow_import": {"roles": ["importer"]}}, IMPORTER, (True, False)),
        ({"allow_import": {"roles": ["importer"]}}, ALICE, (False, False)),
        # the quick-start demo: everyone may import, nobody but root may roll back
        ({"allow_import": True}, None, (True, False)),
        ({"allow_import": True}, BOB, (True, False)),
        ({"allow_import": False, "allow_rollback": False}, ALICE, (False, False)),
        ({"allow_import": {"unauthenticated": True}}, None, (True, False)),
    ],
)
async def test_can_import_and_can_rollback(db_path, config, actor, expected):
    ds = await make_ds(db_path, **config)
    assert (await can_import(ds, actor), await can_rollback(ds, actor)) == expected


NOT_AN_UPLOAD = (
    "Send multipart/form-data with the CSV file as the field 'file', or application/json; got Content-Type 'text/plain'"
)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "actor,status,errors",
    [
        (None, 403, ["An anonymous request may not import: the glyph-import permission is required"]),
        (BOB, 403, ["Actor 'bob' may not import: the glyph-import permission is required"]),
        # allowed: the request gets as far as reading the body, which here is not an upload
        (ALICE, 400, [NOT_AN_UPLOAD]),
        (ROOT, 400, [NOT_AN_UPLOAD]),
    ],
)
async def test_import_endpoint_checks_permission_first(db_path, actor, status, errors):
    ds = await make_ds(db_path, allow_import={"id": ["alice"]})
    headers = {"content-type": "text/plain"}
    cookies = {"ds_actor": actor_cookie(ds, actor)} if actor else {}
    if actor:
        await with_csrf_token(ds, cookies, headers)
    response = await ds.client.post("/api/import", content=b"hello", headers=headers, cookies=cookies)
    assert (response.status_code, response.json()) == (
        status,
        {"ok": False, "errors": [{"message": m} for m in errors], "more": 0},
    )


TOKENS = {"s3cret-bot": {"id": "bot"}, "s3cret-reader": {"id": "reader"}}


NO_FILE = b'--XX\r\nContent-Disposition: form-data; name="source"\r\n\r\nacme\r\n--XX--\r\n'
NO_FILE_ERROR = "The multipart body has no 'file' field; send the CSV file as 'file'"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "token,status,error",
    [
        ("s3cret-bot", 400, NO_FILE_ERROR),  # allowed, and past the CSRF check with no cookie at all
        ("s3cret-reader", 403, "Actor 'reader' may not import: the glyph-import permission is required"),
        ("wrong", 403, "An anonymous request may not import: the glyph-import permission is required"),
    ],
)
async def test_bearer_token_clients(db_path, token, status, error):
    ds = await make_ds(db_path, tokens=TOKENS, allow_import={"id": ["bot"]})
    response = await ds.client.post(
        "/api/import",
        content=NO_FILE,
        headers={"authorization": f"Bearer {token}", "content-type": "multipart/form-data; boundary=XX"},
    )
    assert (response.status_code, response.json()) == (status, {"ok": False, "errors": [{"message": error}], "more": 0})


CSRF_ERROR = "CSRF check failed: send the ds_csrftoken cookie's value in an X-CSRFToken header"


@pytest.mark.asyncio
@pytest.mark.parametrize("send_token", ["matching", "wrong", "none"])
async def test_cookie_authenticated_browser_post_needs_the_csrf_header(db_path, send_token):
    """0.65: a multipart POST with the actor cookie passes with X-CSRFToken equal to the ds_csrftoken cookie;
    without it the answer is a JSON 403 (asgi-csrf would otherwise parse the body and crash).
    1.0a: tokens play no part; a same-origin browser request passes, a cross-site one is refused."""
    ds = await make_ds(db_path, allow_import={"id": ["alice"]})
    cookies = {"ds_actor": actor_cookie(ds, ALICE)}
    page = await ds.client.get("/", cookies=cookies)
    headers = {"content-type": "multipart/form-data; boundary=XX"}
    if TOKEN_CSRF:
        token = page.cookies["ds_csrftoken"]  # set because the page rendered csrftoken() (the logout form)
        cookies["ds_csrftoken"] = token
        if send_token != "none":
            headers["x-csrftoken"] = token if send_token == "matching" else token[:-4] + "abcd"
    else:
        assert "ds_csrftoken" not in page.cookies
        headers["sec-fetch-site"] = {"matching": "same-origin", "wrong": "cross-site", "none": "same-site"}[send_token]
    response = await ds.client.post("/api/import", content=NO_FILE, headers=headers, cookies=cookies)
    if send_token == "matching":
        assert (response.status_code, response.json()) == (
            400,
            {"ok": False, "errors": [{"message": NO_FILE_ERROR}], "more": 0},
        )
    elif TOKEN_CSRF:
        assert (response.status_code, response.json()) == (
            403,
            {"ok": False, "errors": [{"message": CSRF_ERROR}], "more": 0},
        )
    else:
        assert (response.status_code, response.headers["content-type"]) == (403, "text/html; charset=utf-8")


@pytest.mark.asyncio
@pytest.mark.parametrize("actor_id,status", [("ingest-bot", 200), ("reader", 403)])
async def test_token_actor_imports_with_a_grant(db_path, tmp_path, actor_id, status):
    """1.0a: a token from ``datasette create-token``; 0.65, which has none, a static token from
    datasette-auth-tokens."""
    tokens = {"ingest-bot-static": {"id": actor_id}}
    ds = await make_ds(db_path, tokens=tokens, allow_import={"id": ["ingest-bot"]}, upload_dir=str(tmp_path))
    if hasattr(ds, "create_token"):
        token = ds.create_token(actor_id)
        token = await token if inspect.isawaitable(token) else token
    else:
        token = "ingest-bot-static"
    response = await ds.client.post(
        "/api/import",
        files={
            "file": (
                "a.csv",
                b"canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score\nL4,24,0,no,72,2000,0.4\n",
            )
        },
        headers={"authorization": f"Bearer {token}"},
    )
    assert (response.status_code, response.json().get("actor")) == (status, actor_id if status == 200 else None)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "token,status,error",
    [
        ("s3cret-reader", 400, NO_FILE_ERROR),  # granted by `permissions:` only, not by allow_import
        ("s3cret-carol", 403, "Actor 'carol' may not import: the glyph-import permission is required"),
    ],
)
async def test_a_grant_from_permissions_still_counts(db_path, token, status, error):
    """README: the plugin never denies, so a grant from Datasette's own ``permissions:`` configuration (1.0a) or
    another plugin (on 0.65, datasette-test's stand-in for ``permissions:`` is one) still counts."""
    tokens = {**TOKENS, "s3cret-carol": {"id": "carol"}}
    ds = await make_ds(
        db_path, tokens=tokens, permissions={"glyph-import": {"id": "reader"}}, allow_import={"id": ["bot"]}
    )
    response = await ds.client.post(
        "/api/import",
        content=NO_FILE,
        headers={"authorization": f"Bearer {token}", "content-type": "multipart/form-data; boundary=XX"},
    )
    assert (response.status_code, response.json()) == (status, {"ok": False, "errors": [{"message": error}], "more": 0})
