"""A price range alone on GET /api/listings: read from the price index when few rows fall in it, along the table
when many do; the same listings either way, in the same order."""

import pytest

from datasette_glyph.engine import listings, sample
from datasette_glyph.engine.importer import import_csv
from datasette_glyph.engine.listings import ListingQuery, find_listings, price_range_plan


@pytest.fixture
def market_conn(conn, tmp_path):
    import_csv(conn, sample.write_market(tmp_path / "a.csv", 3_000, seed=11))
    import_csv(conn, sample.write_market(tmp_path / "b.csv", 3_000, seed=12))
    return conn


def brute_force(conn, low, high, limit, offset=0):
    ids = [
        r[0]
        for r in conn.execute("SELECT id, price FROM scored_listings ORDER BY id")
        if (low is None or r[1] >= low) and (high is None or r[1] <= high)
    ]
    return ids[offset : offset + limit]


def listed_ids(conn, query):
    listed = find_listings(conn, query)
    return [
        conn.execute(
            "SELECT id FROM scored_listings WHERE import_id = ? AND import_index = ?",
            [row["import_id"], row["import_index"]],
        ).fetchone()[0]
        for row in listed
    ]


@pytest.mark.parametrize(
    "low, high, plan",
    [
        (35_000, None, "index"),  # the dearest data-centre listings
        (1_000.5, 1_001.5, "index"),
        (None, 50, "index"),  # nothing that cheap
        (100, None, "scan"),  # nearly everything
        (None, None, "scan"),
        (500, 5_000, "scan"),
    ],
)
def test_the_plan_follows_the_range_and_the_rows_do_not(market_conn, monkeypatch, low, high, plan):
    monkeypatch.setattr(listings, "PRICE_RANGE_PROBE_ROWS", 500)
    for offset in (0, 3):
        query = ListingQuery(min_price=low, max_price=high, limit=50, offset=offset)
        assert price_range_plan(market_conn, query) == plan
        expected = brute_force(market_conn, low, high, 50, offset)
        assert listed_ids(market_conn, query) == expected
        assert expected or offset or (low, high) == (None, 50)  # every range but the empty one lists something


def test_the_index_plan_reads_the_price_index(market_conn, monkeypatch):
    monkeypatch.setattr(listings, "PRICE_RANGE_PROBE_ROWS", 500)
    query = ListingQuery(min_price=35_000, limit=50)
    sql, params = listings.listing_sql(query, None, price_range_plan(market_conn, query))
    plan = " ".join(row[-1] for row in market_conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "idx_scored_listings_price" in plan
    wide = ListingQuery(min_price=100, limit=50)
    sql, params = listings.listing_sql(wide, None, price_range_plan(market_conn, wide))
    plan = " ".join(row[-1] for row in market_conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "idx_scored_listings_price" not in plan and "TEMP B-TREE" not in plan


def test_other_filters_keep_their_own_index(market_conn):
    import_id = market_conn.execute("SELECT import_id FROM import_batches LIMIT 1").fetchone()[0]
    query = ListingQuery(import_id=import_id, min_price=35_000, limit=50)
    assert price_range_plan(market_conn, query) == "scan"
    assert price_range_plan(market_conn, ListingQuery(min_price=35_000, limit=50), models=["H100_SXM5_80GB"]) == "scan"
