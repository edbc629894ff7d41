"""What a typed model finds, on the sample's models: `/api/listings?model=` and `/api/models?q=` apply one rule."""

import csv
import io
from pathlib import Path
from urllib.parse import quote

import pytest
from datasette_test import Datasette, actor_cookie

from datasette_glyph.engine import lineage, migrator
from datasette_glyph.engine.importer import import_csv
from datasette_glyph.engine.listings import known_models
from datasette_glyph.engine.sqlite import connect

SAMPLE = Path(__file__).resolve().parent.parent / "sample" / "scored_sample.csv"
with open(SAMPLE, newline="", encoding="utf-8") as f:
    SAMPLE_MODELS = [row["canonical_model"] for row in csv.DictReader(f)]  # in file order
MODELS = sorted(set(SAMPLE_MODELS))

# Sample models whose letters and digits are part of other sample models' (A10 of A100_40GB_PCIE, ...)
PART_OF = {
    "A10": ["A100_40GB_PCIE", "A100_40GB_SXM4", "A100_80GB_PCIE"],
    "A40": ["RTX_A4000"],
    "L40": ["L40S"],
}


def spellings(model: str) -> list:
    """How people write a model id: with spaces, dashes, lower case, no separators, a space between words and
    numbers."""
    split = "".join(
        c + " " if i + 1 < len(model) and c.isalpha() != model[i + 1].isalpha() and model[i + 1] != "_" else c
        for i, c in enumerate(model)
    )
    return [
        model.replace("_", " "),
        model.replace("_", "-"),
        model.lower(),
        model.replace("_", ""),
        split.replace("_", " "),
    ]


def expected_for(text: str, model: str) -> tuple:
    if text == model:
        return "exact", [model]
    return "contains", sorted([model] + PART_OF.get(model, []))


SPELLINGS = sorted({text: (text, *expected_for(text, model)) for model in MODELS for text in spellings(model)}.values())

# The table people first asked for: what they type, and what they expect
EXPECTED = [
    ("RTX_4090", "exact", ["RTX_4090"]),
    ("rtx_4090", "contains", ["RTX_4090"]),
    ("4090", "contains", ["RTX_4090"]),
    ("rtx 4090", "contains", ["RTX_4090"]),
    ("RTX4090", "contains", ["RTX_4090"]),
    ("h100 pcie", "contains", ["H100_PCIE_80GB"]),
    ("H100-PCIe-80GB", "contains", ["H100_PCIE_80GB"]),
    ("A100 40GB", "contains", ["A100_40GB_PCIE", "A100_40GB_SXM4"]),
    ("H1OO_PCIE_80GB", "fuzzy", ["H100_PCIE_80GB"]),
    ("zzzz", "none", []),
    # more
    ("H100", "contains", ["H100_NVL_94GB", "H100_PCIE_80GB", "H100_SXM5_80GB"]),
    ("L40", "exact", ["L40"]),
    ("l40", "contains", ["L40", "L40S"]),
    ("rtx a", "contains", ["RTX_A4000", "RTX_A5000", "RTX_A6000"]),
    ("sxm", "contains", ["A100_40GB_SXM4", "H100_SXM5_80GB", "H200_SXM_141GB", "V100_16GB_SXM2"]),
    ("80 GB", "contains", ["A100_80GB_PCIE", "H100_PCIE_80GB", "H100_SXM5_80GB"]),
    ("h100 nvl", "contains", ["H100_NVL_94GB"]),
    ("MI300", "contains", ["MI300X"]),
    ("rtx.6000/ada", "contains", ["RTX_6000_ADA"]),
    ("ＲＴＸ４０９０", "contains", ["RTX_4090"]),  # full-width characters read as their ASCII forms
    ("  RTX 4090  ", "contains", ["RTX_4090"]),
    # near misses that find their model: spelling is forgiven
    ("RXT 4090", "fuzzy", ["RTX_4090"]),
    ("RTX 4O9O", "fuzzy", ["RTX_4090"]),
    ("H100 PCE 80G", "fuzzy", ["H100_PCIE_80GB"]),
    ("H100 SMX5 80G", "fuzzy", ["H100_SXM5_80GB"]),
    ("H100 SXM 80GB", "fuzzy", ["H100_SXM5_80GB"]),
    ("A100 40G SMX4", "fuzzy", ["A100_40GB_SXM4"]),
    ("A100 PCIe 80GB", "fuzzy", ["A100_80GB_PCIE"]),  # words in another order
    ("V100 SXM2 16GB", "fuzzy", ["V100_16GB_SXM2"]),
    ("H200 SMX 141G", "fuzzy", ["H200_SXM_141GB"]),
    ("RXT A400O", "fuzzy", ["RTX_A4000"]),
    ("MI3OOX", "fuzzy", ["MI300X"]),
    ("L4OS", "fuzzy", ["L40S"]),
    ("RTX6OOO ADA", "fuzzy", ["RTX_6000_ADA"]),
    ("NVIDIA H100 PCIe 80GB", "fuzzy", ["H100_PCIE_80GB"]),
    # near misses that must find nothing: numbers are not forgiven, and these GPUs are not in the sample
    ("RTX 4080", "none", []),  # 87.5 against RTX_3080 and RTX_4090
    ("RTX 3070", "none", []),
    ("A100 80GB SXM4", "none", []),  # 94.1 against A100_40GB_SXM4
    ("H100 SXM6 80GB", "none", []),
    ("RTX A6000 48GB", "none", []),
    ("GH200", "none", []),
    ("B200", "none", []),
    ("H100 PCIE 94GB", "none", []),  # numbers agree with H100_NVL_94GB, but it scores 77.4
    # texts that match nothing
    ("gpu", "none", []),
    ("nvidia", "none", []),
    ("_", "none", []),  # no letters or digits: not a model, nor part of one
    ("-", "none", []),
    ("%", "none", []),
    ("%25", "none", []),
    (" ", "none", []),
]


@pytest.fixture(scope="module")
def sample_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "glyph.db"
    conn = connect(path)
    migrator.migrate(conn)
    import_csv(conn, SAMPLE)
    conn.close()
    return path


@pytest.fixture
def ds(sample_path):
    return Datasette([str(sample_path)])


def listed(listings) -> list:
    return [(listing["canonical_model"], listing["import_index"]) for listing in listings]


def sample_rows(models) -> list:
    """The sample's listings of ``models``, in file order, as (canonical_model, import_index)."""
    return [(model, index) for index, model in enumerate(SAMPLE_MODELS, start=1) if model in models]


@pytest.mark.asyncio
@pytest.mark.parametrize("text,match,models", EXPECTED + SPELLINGS)
async def test_listings_of_a_typed_model(ds, text, match, models):
    response = await ds.client.get(f"/api/listings?limit=1000&model={quote(text)}")
    assert (response.status_code, listed(response.json())) == (200, sample_rows(models))


@pytest.mark.asyncio
@pytest.mark.parametrize("text,match,models", EXPECTED + SPELLINGS)
async def test_what_a_typed_model_resolves_to(ds, text, match, models):
    response = await ds.client.get(f"/api/models?q={quote(text)}")
    body = response.json()
    assert (response.status_code, body["ok"], body["q"], body["match"], body["models"]) == (
        200,
        True,
        text,
        match,
        models,
    )


def test_every_sample_model_has_its_spellings():
    # 23 models, five spellings each; some spellings coincide (A10 with spaces is A10)
    assert (len(MODELS), len({model for text, _, models in SPELLINGS for model in models})) == (23, 23)


@pytest.mark.asyncio
async def test_a_fuzzy_match_shows_its_score_and_the_runners_up(ds):
    response = await ds.client.get("/api/models?q=H1OO_PCIE_80GB")
    assert response.json() == {
        "ok": True,
        "q": "H1OO_PCIE_80GB",
        "normalized": "h1oopcie80gb",
        "match": "fuzzy",
        "models": ["H100_PCIE_80GB"],
        "reason": "no model is named or contains 'h1oopcie80gb'; the nearest spelling with the text's numbers scores"
        " 100.0 of 100 (threshold 80, an O among digits read as 0)",
        "threshold": 80,
        "candidates": [
            {"model": "H100_PCIE_80GB", "score": 100.0, "numbers_agree": True},
            {"model": "A100_80GB_PCIE", "score": 87.5, "numbers_agree": False},
            {"model": "A100_40GB_PCIE", "score": 81.2, "numbers_agree": False},
            {"model": "H100_SXM5_80GB", "score": 72.7, "numbers_agree": True},
            {"model": "H100_NVL_94GB", "score": 64.5, "numbers_agree": False},
        ],
    }


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "text,reason",
    [
        ("RTX_4090", "'RTX_4090' is a canonical_model"),
        ("a100 40", "ignoring case and separators, 'a10040' is part of each of these models"),
        (
            "RTX 4080",
            "no model is named or contains 'rtx4080'; the nearest spelling, RTX_3080 (87.5 of 100), has other numbers",
        ),
        (
            "zzzz",
            "no model is named or contains 'zzzz'; the nearest spelling, A10, scores 0.0 of 100, below 80",
        ),
        ("_", "the text has no letters or digits"),
    ],
)
async def test_the_reason_says_which_step_decided(ds, text, reason):
    response = await ds.client.get(f"/api/models?q={quote(text)}")
    assert response.json()["reason"] == reason


@pytest.mark.asyncio
async def test_without_q_every_model(ds):
    response = await ds.client.get("/api/models")
    assert (response.status_code, response.json()) == (200, {"ok": True, "models": MODELS, "threshold": 80})


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "request_kwargs,status,body",
    [
        (
            {"url": "/api/models?q=%00"},
            422,
            {
                "ok": False,
                "errors": [
                    {"message": "q: must not contain a NUL character (got '\\x00')", "parameter": "q", "value": "\x00"}
                ],
                "more": 0,
            },
        ),
        (
            {"url": "/api/models", "method": "POST"},
            405,
            {"ok": False, "errors": [{"message": "POST is not allowed here; use GET"}], "more": 0},
        ),
    ],
)
async def test_refused_requests(ds, request_kwargs, status, body):
    if request_kwargs.get("method") == "POST":
        response = await ds.client.post(request_kwargs["url"], content=b"")
    else:
        response = await ds.client.get(request_kwargs["url"])
    assert (response.status_code, response.json()) == (status, body)


@pytest.mark.asyncio
@pytest.mark.parametrize("actor,status", [(None, 403), ({"id": "bob"}, 403), ({"id": "alice"}, 200)])
async def test_follows_the_models_table_permission(sample_path, actor, status):
    ds = Datasette([str(sample_path)], metadata={"databases": {"glyph": {"allow": {"id": "alice"}}}})
    cookies = {"ds_actor": actor_cookie(ds, actor)} if actor else {}
    response = await ds.client.get("/api/models?q=rtx 4090", cookies=cookies)
    table = await ds.client.get("/glyph/models.json", cookies=cookies)
    assert (response.status_code, table.status_code) == (status, status)
    if status == 403:
        assert response.json() == {"ok": False, "errors": [{"message": "You may not view models"}], "more": 0}
    else:
        assert response.json()["models"] == ["RTX_4090"]


def one_row_csv(model: str) -> io.BytesIO:
    header = "canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score\n"
    return io.BytesIO(f"{header}{model},16,0,False,320,1199.0,0.5\n".encode())


@pytest.mark.asyncio
async def test_a_model_imported_by_another_process_is_found_at_once_and_gone_after_rollback(tmp_path):
    # The server's read connections keep their cache of prepared models; a second connection (as the
    # command line would) imports a new model and then rolls it back.
    path = tmp_path / "glyph.db"
    writer = connect(path)
    migrator.migrate(writer)
    import_csv(writer, SAMPLE)
    ds = Datasette([str(path)])

    async def resolve(text):
        body = (await ds.client.get(f"/api/models?q={quote(text)}")).json()
        listings = (await ds.client.get(f"/api/listings?model={quote(text)}")).json()
        return body["match"], body["models"], [listing["canonical_model"] for listing in listings]

    before = await resolve("rtx 4080")
    result = import_csv(writer, one_row_csv("RTX_4080"))
    imported = await resolve("rtx 4080")
    lineage.rollback_import(writer, result.import_id)
    rolled_back = await resolve("rtx 4080")
    writer.close()
    assert (before, imported, rolled_back) == (
        ("none", [], []),
        ("contains", ["RTX_4080"], ["RTX_4080"]),
        ("none", [], []),
    )


def test_prepared_models_are_shared_until_the_models_change(tmp_path):
    path = tmp_path / "glyph.db"
    first = connect(path)
    migrator.migrate(first)
    import_csv(first, SAMPLE)
    second = connect(path)
    same = known_models(first) is known_models(second)
    import_csv(first, one_row_csv("RTX_4080"))
    after = known_models(second)
    first.close()
    second.close()
    assert (same, after.names == tuple(sorted(MODELS + ["RTX_4080"]))) == (True, True)


# What docs/api.md says of model matching, on the quick start's own data (sample/scored_sample*.csv)
DOCUMENTED_MATCHES = [
    ("L40", "exact", ["L40"]),
    ("rtx 4090", "contains", ["RTX_4090"]),
    ("RTX4090", "contains", ["RTX_4090"]),
    ("rtx_4090", "contains", ["RTX_4090"]),
    ("4090", "contains", ["RTX_4090"]),
    ("h100 pcie", "contains", ["H100_PCIE_80GB"]),
    ("H100-PCIe-80GB", "contains", ["H100_PCIE_80GB"]),
    ("A100 40GB", "contains", ["A100_40GB_PCIE", "A100_40GB_SXM4"]),
    ("l40", "contains", ["L40", "L40S"]),
    ("H1OO_PCIE_80GB", "fuzzy", ["H100_PCIE_80GB"]),
    ("RXT 4090", "fuzzy", ["RTX_4090"]),
    ("A100 PCIe 80GB", "fuzzy", ["A100_80GB_PCIE"]),
    ("RTX 4070", "none", []),
    ("A100 80GB SXM4", "none", []),
    ("zzzz", "none", []),
    ("_", "none", []),
    ("%", "none", []),
]


def test_the_documented_model_matches_hold_on_the_quick_start_data(tmp_path):
    from .server import running_server

    repo = Path(__file__).resolve().parents[1]
    section = (repo / "docs" / "api.md").read_text(encoding="utf-8").split("## Model matching", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert [text for text, _, _ in DOCUMENTED_MATCHES if f"`{text}`" not in section] == []
    path = tmp_path / "glyph.db"
    conn = connect(path)
    migrator.migrate(conn)
    for name in ("scored_sample.csv", "scored_sample_next.csv"):
        import_csv(conn, repo / "sample" / name)
    conn.close()
    with running_server(path, log_dir=tmp_path) as server:
        found = [
            (text, body["match"], body["models"])
            for text in [t for t, _, _ in DOCUMENTED_MATCHES]
            for body in [server.get("/api/models?q=" + quote(text)).json()]
        ]
    assert found == DOCUMENTED_MATCHES
