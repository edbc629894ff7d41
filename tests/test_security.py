"""Security against a real server: who may import and roll back, cross-site requests, tokens, escaping of
user text in every page that shows it, and no SQL built from request values by string formatting."""

from __future__ import annotations

import ast
import re
import subprocess
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
import yaml
from datasette.app import Datasette
from datasette_test import actor_cookie
from markupsafe import escape

import datasette_glyph
from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect

from .bad_input_corpus import GOOD_CSV, csv_bytes, multipart_envelope, row
from .server import datasette_command, start_server
from .support import TOKEN_CSRF, database_checksum

# 0.65 protects POSTs with asgi-csrf tokens; 1.0a with the Origin / Sec-Fetch-Site headers
SECRET = "glyph-security-secret"
REPO = Path(__file__).resolve().parents[1]

# Bearer tokens from datasette-auth-tokens, as the README recommends on 0.65 (which has no tokens of its own)
AUTH_TOKENS = {
    "tokens": [
        {"token": "alice-token", "actor": {"id": "alice"}},
        {"token": "bob-token", "actor": {"id": "bob"}},
    ]
}


ANONYMOUS_IMPORT = "An anonymous request may not import: the glyph-import permission is required"
BOB_IMPORT = "Actor 'bob' may not import: the glyph-import permission is required"
ANONYMOUS_ROLLBACK = "An anonymous request may not roll back imports: the glyph-rollback permission is required"
BOB_ROLLBACK = "Actor 'bob' may not roll back imports: the glyph-rollback permission is required"


class Client:
    """Requests to the server as an anonymous visitor, a Bearer token, or a browser with a signed actor cookie."""

    def __init__(self, server):
        self.server = server
        self.signer = Datasette(memory=True, secret=SECRET)  # signs cookies the way the server does

    def cookie(self, actor_id: str) -> str:
        return actor_cookie(self.signer, {"id": actor_id})

    def csrf_token(self, cookie: str) -> str:
        """The ds_csrftoken cookie a browser gets with the upload page (0.65)."""
        page = self.server.get("/-/glyph/import", headers={"Cookie": f"ds_actor={cookie}"})
        jar = SimpleCookie()
        jar.load(page.headers.get("set-cookie", ""))
        return jar["ds_csrftoken"].value

    def headers(self, who: str, browser: str = "same-origin") -> dict:
        """``who``: anonymous, alice-token, bob-token, alice-cookie, bob-cookie. ``browser``, for cookies:
        same-origin (a page of this site, sending the CSRF token on 0.65); no-token and wrong-token (a script
        that has the cookie but not the token); cross-site and foreign-origin (another site's page: it cannot
        read the token, and the browser says where the request comes from)."""
        if who == "anonymous":
            return {}
        if who.endswith("-token"):
            return {"Authorization": f"Bearer {who}"}
        cookie = self.cookie(who.split("-")[0])
        headers = {"Cookie": f"ds_actor={cookie}"}
        if TOKEN_CSRF and browser in ("same-origin", "wrong-token"):
            token = self.csrf_token(cookie)
            headers["Cookie"] += f"; ds_csrftoken={token}"
            headers["X-CSRFToken"] = token if browser == "same-origin" else token[:-4] + "abcd"
        if browser == "same-origin":
            headers["Sec-Fetch-Site"] = "same-origin"
            headers["Origin"] = self.server.url
        elif browser == "cross-site":
            headers["Sec-Fetch-Site"] = "cross-site"
        elif browser == "foreign-origin":
            headers["Origin"] = "https://evil.example"
        return headers

    def import_csv(
        self, who: str, browser: str = "same-origin", content: bytes = GOOD_CSV, filename="good.csv", fields=None
    ):
        head, tail, content_type = multipart_envelope("file", filename, fields or {})
        headers = {"Content-Type": content_type, **self.headers(who, browser)}
        return self.server.request("POST", "/api/import", body=head + content + tail, headers=headers)

    def rollback(self, who: str, import_id: str, browser: str = "same-origin"):
        return self.server.request("DELETE", f"/api/imports/{import_id}", headers=self.headers(who, browser))

    def reimport(self, who: str, import_id: str, browser: str = "same-origin"):
        return self.server.request("POST", f"/api/imports/{import_id}/reimport", headers=self.headers(who, browser))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    work = tmp_path_factory.mktemp("security")
    db_path = work / "glyph.db"
    conn = connect(db_path)
    migrator.migrate(conn)
    conn.close()
    metadata = yaml.safe_load((REPO / "metadata.yml").read_text())
    metadata["plugins"] = {"datasette-auth-tokens": AUTH_TOKENS}
    server = start_server(
        db_path,
        metadata=metadata,
        plugin_config={
            "allow_import": {"id": ["alice"]},
            "allow_rollback": {"id": ["alice"]},
            "upload_dir": str(work / "uploads"),
        },
        env={"DATASETTE_SECRET": SECRET},
        log_dir=work,
    )
    yield Client(server)
    server.stop()


def first_import(client) -> str:
    response = client.import_csv("alice-token")
    assert response.status == 200, response.text
    return response.json()["import_id"]


@pytest.mark.parametrize(
    "who,browser,status,errors",
    [
        ("anonymous", None, 403, [ANONYMOUS_IMPORT]),
        ("bob-token", None, 403, [BOB_IMPORT]),
        ("bob-cookie", "same-origin", 403, [BOB_IMPORT]),
        # a logged-in importer's browser, tricked into posting from another site
        ("alice-cookie", "cross-site", 403, None),
        ("alice-cookie", "foreign-origin", 403, None),
        ("alice-cookie", "no-token", 403, None),
        ("alice-cookie", "wrong-token", 403, None),
    ],
)
def test_import_refused(client, who, browser, status, errors):
    if not TOKEN_CSRF and browser in ("no-token", "wrong-token"):
        # 1.0a has no CSRF tokens: without Origin or Sec-Fetch-Site (curl, not a browser) the POST is accepted
        status, errors = 200, None
    before = database_checksum(client.server.db_path)
    response = client.import_csv(who, browser or "same-origin")
    assert response.status == status, response.text[:300]
    if status == 403:
        assert database_checksum(client.server.db_path) == before
    if errors is not None:
        assert response.json() == {"ok": False, "errors": [{"message": m} for m in errors], "more": 0}


@pytest.mark.parametrize(
    "who,browser,status,errors",
    [
        ("anonymous", None, 403, [ANONYMOUS_ROLLBACK]),
        ("bob-token", None, 403, [BOB_ROLLBACK]),
        ("bob-cookie", "same-origin", 403, [BOB_ROLLBACK]),
        ("alice-cookie", "cross-site", 403, None),
        ("alice-cookie", "foreign-origin", 403, None),
    ],
)
def test_rollback_refused(client, who, browser, status, errors):
    import_id = first_import(client)
    before = database_checksum(client.server.db_path)
    response = client.rollback(who, import_id, browser or "same-origin")
    assert response.status == status, response.text[:300]
    if status == 403:
        assert database_checksum(client.server.db_path) == before
    if errors is not None:
        assert response.json() == {"ok": False, "errors": [{"message": m} for m in errors], "more": 0}


@pytest.mark.parametrize(
    "who,browser,status,errors",
    [
        ("anonymous", None, 403, [ANONYMOUS_IMPORT]),
        ("bob-token", None, 403, [BOB_IMPORT]),
        ("bob-cookie", "same-origin", 403, [BOB_IMPORT]),
        ("alice-cookie", "cross-site", 403, None),
        ("alice-cookie", "foreign-origin", 403, None),
        ("alice-cookie", "no-token", 403, None),
        ("alice-cookie", "wrong-token", 403, None),
    ],
)
def test_reimport_refused(client, who, browser, status, errors):
    if not TOKEN_CSRF and browser in ("no-token", "wrong-token"):
        status, errors = 200, None  # 1.0a: no tokens; without Origin or Sec-Fetch-Site the POST is accepted
    import_id = first_import(client)
    before = database_checksum(client.server.db_path)
    response = client.reimport(who, import_id, browser or "same-origin")
    assert response.status == status, response.text[:300]
    if status == 403:
        assert database_checksum(client.server.db_path) == before
    if errors is not None:
        assert response.json() == {"ok": False, "errors": [{"message": m} for m in errors], "more": 0}


@pytest.mark.parametrize("who", ["alice-token", "alice-cookie"])
def test_allowed_actor_reimports(client, who):
    import_id = first_import(client)
    response = client.reimport(who, import_id)
    assert response.status == 200, response.text
    assert (response.json()["reimport_of"], response.json()["actor"], response.json()["record_count"]) == (
        import_id,
        "alice",
        2,
    )


@pytest.mark.parametrize("who", ["alice-token", "alice-cookie"])
def test_allowed_actor_imports_and_rolls_back(client, who):
    response = client.import_csv(who)
    assert response.status == 200, response.text
    result = response.json()
    assert (result["record_count"], result["actor"]) == (2, "alice")
    response = client.rollback(who, result["import_id"])
    assert response.status == 200, response.text
    assert (response.json()["status"], response.json()["removed"]["scored_listings"]) == ("rolled_back", 2)


def test_datasette_api_token(client):
    """1.0a: a token made by ``datasette create-token`` stands for its actor. 0.65 has no such command."""
    made = subprocess.run(
        [datasette_command(), "create-token", "alice", "--secret", SECRET], capture_output=True, text=True
    )
    if TOKEN_CSRF:
        assert made.returncode != 0
        return
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    head, tail, content_type = multipart_envelope("file", "token.csv", {})
    response = client.server.request(
        "POST",
        "/api/import",
        body=head + GOOD_CSV + tail,
        headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
    )
    assert response.status == 200, response.text
    assert response.json()["actor"] == "alice"


# User text that would run as HTML or JS if a page printed it raw
HOSTILE = {
    "filename": "<img src=x onerror=alert(1)>.csv",
    "source": '<script>alert("source")</script>',
    "description": "\"'><svg onload=alert('description')>",
    "seller": "<script>alert('seller')</script>",
    "title": "<b onmouseover=alert(2)>GPU</b>",
}


@pytest.fixture(scope="module")
def hostile_import(client):
    content = csv_bytes([row(seller=HOSTILE["seller"], title=HOSTILE["title"])])
    response = client.import_csv(
        "alice-token",
        content=content,
        filename=HOSTILE["filename"],
        fields={"source": HOSTILE["source"], "description": HOSTILE["description"]},
    )
    assert response.status == 200, response.text
    return response.json()["import_id"]


def test_user_text_is_stored_verbatim(client, hostile_import):
    batch = client.server.get(f"/api/imports/{hostile_import}").json()
    assert {k: batch[k] for k in ("filename", "source", "description")} == {
        k: HOSTILE[k] for k in ("filename", "source", "description")
    }
    listed = client.server.get(f"/api/listings?import_id={hostile_import}").json()
    assert [(r["seller"], r["title"]) for r in listed] == [(HOSTILE["seller"], HOSTILE["title"])]


@pytest.mark.parametrize(
    "page,shown",
    [
        ("/-/glyph/imports", ["filename", "source"]),
        ("/-/glyph/imports/{id}", ["filename", "source", "description"]),
        ("/glyph/import_batches", ["filename", "source", "description"]),
        ("/glyph/scored_listings?import_id={id}", ["filename", "seller", "title"]),  # the batch label links rows
    ],
)
def test_user_text_is_shown_escaped(client, hostile_import, page, shown):
    response = client.server.get(page.format(id=hostile_import))
    assert response.status == 200
    html = response.text
    assert [name for name, text in HOSTILE.items() if text in html] == []  # nothing raw, anywhere
    assert [name for name in shown if str(escape(HOSTILE[name])) not in html] == []


# SQL text may interpolate only these: identifiers from the code's own constants and values the server makes.
# Anything else put into SQL by an f-string, %-format or .format() must be reviewed and added here with why.
SQL_INTERPOLATIONS_REVIEWED = {
    ("cli.py", "BUSY_TIMEOUT_MS"),  # a constant
    ("db.py", "BUSY_TIMEOUT_MS"),
    ("config.py", "wait_ms"),  # int() of the plugin config's write_wait_ms
    ("config.py", "int(autocheckpoint)"),  # read back from PRAGMA wal_autocheckpoint
    ("importer.py", "int(secure_delete)"),  # read back from PRAGMA secure_delete
    ("importer.py", "SORT_THREADS"),  # a constant
    ("importer.py", "int(self.threads)"),  # read back from PRAGMA threads
    ("db.py", "name"),  # savepoint names are chosen by the code (glyph, glyph_plan, glyph_import, ...)
    ("migrate.py", "int(foreign_keys)"),  # read back from PRAGMA foreign_keys
    ("migrate.py", "schema.quote(name)"),  # a glyph_kept_ table name read from sqlite_master, quoted
    # schema.py: table and column names read from the database's own schema, quoted; expressions and joins
    # are built by the migrations from those names; the bookkeeping table names are constants
    ("schema.py", "quote(table)"),
    ("schema.py", "quote(old)"),
    ("schema.py", "names"),
    ("schema.py", "exprs"),
    ("schema.py", "joins"),
    ("schema.py", "name"),
    # importer.py: column names come from the COLUMNS table (a header name is only used if it is a key there);
    # import_id is a server-made uuid4; the cache sizes are ints
    ("importer.py", "', '.join(names)"),
    ("importer.py", "', '.join(('?' for _ in names))"),
    ("importer.py", "self.import_id"),
    ("importer.py", "''.join((n + ', ' for n in names))"),
    ("importer.py", "''.join(('?, ' for _ in names))"),
    # the INSERT of many VALUES rows: known column names, the quoted names of the table's own columns whose default
    # is the moment (PRAGMA table_info), and those defaults evaluated once by SQLite and quoted by quote()
    ("importer.py", "''.join((n + ', ' for n in written))"),
    ("importer.py", "into"),
    ("importer.py", "values"),
    ("importer.py", "', '.join([values] * ROWS_PER_STATEMENT)"),
    ("importer.py", "default"),  # a column's DEFAULT expression, read from the database's own schema
    ("deltas.py", "PREVIOUS_IMPORTS_SQL"),  # a constant query
    ("importer.py", "IMPORT_CACHE_KIB"),
    ("importer.py", "SUMMARY_CACHE_KIB"),
    ("importer.py", "INDEX_BUILD_CACHE_KIB"),
    ("importer.py", "int(self.cache_size)"),
    ("importer.py", "int(cache_size)"),
    # lineage.py, listings.py: fixed column lists; WHERE clauses are constant texts with :named parameters
    ("lineage.py", "', '.join(BATCH_COLUMNS)"),
    ("lineage.py", "ROLLBACK_CACHE_KIB"),  # a constant
    ("lineage.py", "int(cache_size)"),  # read back from PRAGMA cache_size
    ("lineage.py", "', '.join(('p.' + c for c in BATCH_COLUMNS))"),
    ("listings.py", "', '.join(FIELDS)"),
    ("listings.py", "' AND '.join(where)"),
    ("listings.py", "order"),  # "import_index" or "id"
    ("listings.py", "PRICE_INDEX"),  # a constant index name
    ("listings.py", "price"),  # "price" or "+price"
    ("listings.py", "table"),  # scored_listings, with or without INDEXED BY the constant index name
}
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|PRAGMA|SAVEPOINT|WHERE|VALUES|ORDER BY)\b")


def sql_interpolations(source: str):
    """(line, expression) of every value interpolated into a string that looks like SQL."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
            if SQL_WORDS.search(text):
                found += [(node.lineno, ast.unparse(v.value)) for v in node.values if isinstance(v, ast.FormattedValue)]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant):
            if isinstance(node.left.value, str) and SQL_WORDS.search(node.left.value):
                found.append((node.lineno, "%-format: " + ast.unparse(node.right)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"
            and isinstance(node.func.value, ast.Constant)
            and isinstance(node.func.value.value, str)
            and SQL_WORDS.search(node.func.value.value)
        ):
            found.append((node.lineno, ".format: " + ", ".join(ast.unparse(a) for a in node.args)))
    return found


def test_sql_is_never_formatted_from_request_values():
    unreviewed = {}
    package = Path(datasette_glyph.__file__).parent
    for path in sorted(package.glob("*.py")):
        for line, expression in sql_interpolations(path.read_text()):
            if (path.name, expression) not in SQL_INTERPOLATIONS_REVIEWED:
                unreviewed.setdefault(path.name, []).append((line, expression))
    assert unreviewed == {}


@pytest.mark.parametrize(
    "source,expected",
    [
        ("conn.execute(f\"SELECT * FROM t WHERE a = {request.args['a']}\")", [(1, "request.args['a']")]),
        ('sql = "DELETE FROM t WHERE id = %s" % value', [(1, "%-format: value")]),
        ('sql = "SELECT {} FROM t".format(column)', [(1, ".format: column")]),
        ('conn.execute("SELECT * FROM t WHERE a = ?", [value])', []),
        ('message = f"Line {line}: {value}"', []),
    ],
)
def test_the_sql_scan_finds_formatting(source, expected):
    assert sql_interpolations(source) == expected
