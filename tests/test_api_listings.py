"""GET /api/listings: the filters, the forgiving model match, pagination, order, errors and visibility."""

import pytest
from datasette_test import Datasette, actor_cookie

from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect

from .json_style import refusal

IMPORT_A = "aaaaaaaa-0000-4000-8000-000000000001"
IMPORT_B = "bbbbbbbb-0000-4000-8000-000000000002"

# (label, import_id, import_index, canonical_model, price, extra columns); rows are inserted in this order
ROWS = [
    ("A1", IMPORT_A, 1, "H100_PCIE_80GB", 21000.0, {"region": "US", "seller": "Acme", "quantity": 2}),
    ("A2", IMPORT_A, 2, "A100_40GB_PCIE", 6000.0, {}),
    ("A3", IMPORT_A, 3, "L40S", 7500.5, {"title": "NVIDIA L40S 48GB"}),
    ("A4", IMPORT_A, 4, "H100_SXM5_80GB", 25000.0, {}),
    ("B1", IMPORT_B, 1, "L40", 5000.0, {}),
    ("B2", IMPORT_B, 2, "H100_PCIE_80GB", 19999.99, {}),
    ("B3", IMPORT_B, 3, "RTX_4090", 1500.0, {"condition": "used"}),
]
SPECS = {  # model -> (vram_gb, mig_support, nvlink, tdp_watts)
    "H100_PCIE_80GB": (80, 7, 1, 350),
    "A100_40GB_PCIE": (40, 7, 1, 250),
    "L40S": (48, 0, 0, 350),
    "H100_SXM5_80GB": (80, 7, 1, 700),
    "L40": (48, 0, 0, 300),
    "RTX_4090": (24, 0, 0, 450),
}
LABELS = {(import_id, index): label for label, import_id, index, *_ in ROWS}


def seed(path):
    conn = connect(path)
    migrator.migrate(conn)
    conn.execute("PRAGMA foreign_keys = ON")
    for import_id, at in ((IMPORT_A, "2025-01-01 10:00:00"), (IMPORT_B, "2025-01-02 10:00:00")):
        conn.execute(
            "INSERT INTO import_batches (import_id, imported_at, filename, record_count) VALUES (?, ?, ?, ?)",
            [import_id, at, f"{import_id[:8]}.csv", sum(1 for r in ROWS if r[1] == import_id)],
        )
    for index, (model, (vram, mig, nvlink, tdp)) in enumerate(SPECS.items(), start=1):
        conn.execute(
            "INSERT INTO models (model, vram_gb, mig_support, nvlink, tdp_watts, import_id, import_index)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [model, vram, mig, nvlink, tdp, IMPORT_A, index],
        )
    for _label, import_id, index, model, price, extra in ROWS:
        vram, mig, nvlink, tdp = SPECS[model]
        columns = {
            "canonical_model": model,
            "vram_gb": vram,
            "mig_support": mig,
            "nvlink": nvlink,
            "tdp_watts": tdp,
            "price": price,
            "score": 0.5,
            "import_id": import_id,
            "import_index": index,
            "form_factor": None,
            **extra,
        }
        conn.execute(
            f"INSERT INTO scored_listings ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            list(columns.values()),
        )
    conn.close()


@pytest.fixture(scope="module")
def seeded_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("listings") / "glyph.db"
    seed(path)
    return path


@pytest.fixture
def ds(seeded_path):
    return Datasette([str(seeded_path)])


def labels(listings):
    return [LABELS[(listing["import_id"], listing["import_index"])] for listing in listings]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query,expected",
    [
        ("", ["A1", "A2", "A3", "A4", "B1", "B2", "B3"]),
        # model: an exact id wins; otherwise every model containing the text, ignoring case and separators
        # (tests/test_model_match.py has the whole rule)
        ("model=H100", ["A1", "A4", "B2"]),
        ("model=h100_pcie", ["A1", "B2"]),
        ("model=H100_PCIE_80GB", ["A1", "B2"]),
        ("model=L40", ["B1"]),
        ("model=l40", ["A3", "B1"]),
        ("model=PCIE", ["A1", "A2", "B2"]),
        ("model=_", []),  # no letters or digits; _ and % are not wildcards
        ("model=%25", []),
        ("model=H200", []),
        # prices, inclusive at both ends
        ("min_price=7500.5", ["A1", "A3", "A4", "B2"]),
        ("max_price=5000", ["B1", "B3"]),
        ("min_price=5000&max_price=5000", ["B1"]),
        ("min_price=0&max_price=0", []),
        # import_id: exact, rows in file order
        (f"import_id={IMPORT_B}", ["B1", "B2", "B3"]),
        (f"import_id={IMPORT_A}&model=H100", ["A1", "A4"]),
        (f"import_id={IMPORT_A}&model=RTX", []),
        ("import_id=bbbbbbbb", []),
        # pagination
        ("limit=2", ["A1", "A2"]),
        ("limit=2&offset=2", ["A3", "A4"]),
        ("limit=1000&offset=6", ["B3"]),
        ("offset=7", []),
        (f"import_id={IMPORT_A}&limit=1&offset=3", ["A4"]),
        # empty values count as not given
        ("model=&min_price=&max_price=&import_id=&limit=&offset=", ["A1", "A2", "A3", "A4", "B1", "B2", "B3"]),
    ],
)
async def test_filters(ds, query, expected):
    response = await ds.client.get("/api/listings?" + query)
    assert response.status_code == 200
    assert labels(response.json()) == expected


@pytest.mark.asyncio
async def test_each_listing_has_required_fields_and_non_null_optional_ones(ds):
    response = await ds.client.get(f"/api/listings?import_id={IMPORT_A}&limit=3")
    assert response.json() == [
        {
            "canonical_model": "H100_PCIE_80GB",
            "vram_gb": 80,
            "mig_support": 7,
            "nvlink": True,
            "tdp_watts": 350,
            "price": 21000.0,
            "score": 0.5,
            "quantity": 2,
            "seller": "Acme",
            "region": "US",
            "import_id": IMPORT_A,
            "import_index": 1,
        },
        {
            "canonical_model": "A100_40GB_PCIE",
            "vram_gb": 40,
            "mig_support": 7,
            "nvlink": True,
            "tdp_watts": 250,
            "price": 6000.0,
            "score": 0.5,
            "import_id": IMPORT_A,
            "import_index": 2,
        },
        {
            "canonical_model": "L40S",
            "vram_gb": 48,
            "mig_support": 0,
            "nvlink": False,
            "tdp_watts": 350,
            "price": 7500.5,
            "score": 0.5,
            "title": "NVIDIA L40S 48GB",
            "import_id": IMPORT_A,
            "import_index": 3,
        },
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query,status,error",
    [
        ("limit=0", 422, "limit: must be between 1 and 1000 (got '0')"),
        ("limit=1001", 422, "limit: must be between 1 and 1000 (got '1001')"),
        ("limit=ten", 422, "limit: must be an integer (got 'ten')"),
        ("limit=1.5", 422, "limit: must be an integer (got '1.5')"),
        ("offset=-1", 422, "offset: must be >= 0 (got '-1')"),
        ("offset=x", 422, "offset: must be an integer (got 'x')"),
        (
            "offset=99999999999999999999",
            422,
            "offset: must be at most 9223372036854775807 (got '99999999999999999999')",
        ),
        ("model=%00", 422, "model: must not contain a NUL character (got '\\x00')"),
        ("model=H100%00", 422, "model: must not contain a NUL character (got 'H100\\x00')"),
        ("min_price=-0.01", 422, "min_price: must be >= 0 (got '-0.01')"),
        ("min_price=cheap", 422, "min_price: must be a number (got 'cheap')"),
        ("max_price=-5", 422, "max_price: must be >= 0 (got '-5')"),
        ("max_price=nan", 422, "max_price: must be a finite number (got 'nan')"),
        ("max_price=inf", 422, "max_price: must be a finite number (got 'inf')"),
        ("min_price=10&max_price=5", 400, "min_price (10) is greater than max_price (5)"),
        ("min_price=1e9&max_price=0.5", 400, "min_price (1e+09) is greater than max_price (0.5)"),
    ],
)
async def test_bad_parameters(ds, query, status, error):
    response = await ds.client.get("/api/listings?" + query)
    assert (response.status_code, response.json()) == (
        status,
        {"ok": False, "errors": [refusal(query, error)], "more": 0},
    )


@pytest.mark.asyncio
async def test_only_get(ds):
    response = await ds.client.post("/api/listings", content=b"")
    assert (response.status_code, response.headers["allow"], response.json()) == (
        405,
        "GET",
        {"ok": False, "errors": [{"message": "POST is not allowed here; use GET"}], "more": 0},
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("actor,status", [(None, 403), ({"id": "bob"}, 403), ({"id": "alice"}, 200)])
async def test_follows_the_table_view_permission(seeded_path, actor, status):
    ds = Datasette([str(seeded_path)], metadata={"databases": {"glyph": {"allow": {"id": "alice"}}}})
    cookies = {"ds_actor": actor_cookie(ds, actor)} if actor else {}
    listings = await ds.client.get("/api/listings?limit=1", cookies=cookies)
    table = await ds.client.get("/glyph/scored_listings.json", cookies=cookies)
    assert (listings.status_code, table.status_code) == (status, status)
    if status == 403:
        assert listings.json() == {"ok": False, "errors": [{"message": "You may not view scored_listings"}], "more": 0}
    else:
        assert labels(listings.json()) == ["A1"]
