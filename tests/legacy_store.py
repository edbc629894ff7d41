"""Databases as the old store's releases wrote them, dirty rows included.

Each builder writes one variant that operators have in the field (see the README's Migrations section):
its DDL is written here from what those databases hold, not taken from this project's migrations, so
that adoption is tested against files it did not make.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable, Dict

# The pre-lineage release: AUTOINCREMENT ids, NOT NULL timestamps, ON DELETE actions, update_*_timestamp triggers.
PRE_LINEAGE = """
CREATE TABLE import_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    import_id TEXT NOT NULL UNIQUE,
    imported_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    source TEXT,
    record_count INTEGER DEFAULT 0,
    description TEXT
);
CREATE TABLE models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL UNIQUE,
    vram_gb INTEGER,
    tdp_watts INTEGER,
    mig_support INTEGER DEFAULT 0,
    nvlink BOOLEAN DEFAULT 0,
    generation TEXT,
    cuda_cores INTEGER,
    slot_width INTEGER,
    pcie_generation INTEGER,
    listing_count INTEGER DEFAULT 0,
    min_price REAL,
    median_price REAL,
    max_price REAL,
    avg_price REAL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    import_id TEXT,
    FOREIGN KEY (import_id) REFERENCES import_batches(import_id) ON DELETE SET NULL
);
CREATE INDEX idx_models_model ON models(model);
CREATE TABLE listings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    price REAL NOT NULL,
    canonical_model TEXT NOT NULL,
    match_type TEXT NOT NULL,
    match_score REAL NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    import_id TEXT,
    FOREIGN KEY (canonical_model) REFERENCES models(model) ON DELETE CASCADE,
    FOREIGN KEY (import_id) REFERENCES import_batches(import_id) ON DELETE SET NULL
);
CREATE INDEX idx_listings_canonical_model ON listings(canonical_model);
CREATE INDEX idx_listings_import_id ON listings(import_id);
CREATE TABLE scored_listings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    canonical_model TEXT NOT NULL,
    price REAL NOT NULL,
    vram_gb INTEGER NOT NULL,
    tdp_watts INTEGER NOT NULL,
    mig_support INTEGER DEFAULT 0,
    nvlink BOOLEAN DEFAULT 0,
    generation TEXT,
    cuda_cores INTEGER,
    slot_width INTEGER,
    pcie_generation INTEGER,
    form_factor TEXT DEFAULT 'Standard',
    notes TEXT,
    warnings TEXT,
    score REAL NOT NULL,
    condition TEXT,
    quantity INTEGER,
    min_order_qty INTEGER,
    seller TEXT,
    region TEXT,
    source_url TEXT,
    source_type TEXT,
    seen_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    import_id TEXT, -- nullable: rows from before batches
    FOREIGN KEY (canonical_model) REFERENCES models(model) ON DELETE CASCADE,
    FOREIGN KEY (import_id) REFERENCES import_batches(import_id) ON DELETE SET NULL
);
CREATE INDEX idx_scored_listings_canonical_model ON scored_listings(canonical_model);
CREATE INDEX idx_scored_listings_score ON scored_listings(score);
CREATE INDEX idx_scored_listings_region ON scored_listings(region);
CREATE INDEX idx_scored_listings_seen_at ON scored_listings(seen_at);
CREATE INDEX idx_scored_listings_import_id ON scored_listings(import_id);
CREATE TABLE quantized_listings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scored_listing_id INTEGER NOT NULL,
    model_7b INTEGER NOT NULL,
    model_13b INTEGER NOT NULL,
    model_70b INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    import_id TEXT,
    FOREIGN KEY (scored_listing_id) REFERENCES scored_listings(id) ON DELETE CASCADE,
    FOREIGN KEY (import_id) REFERENCES import_batches(import_id) ON DELETE SET NULL
);
CREATE INDEX idx_quantized_listings_scored_listing_id ON quantized_listings(scored_listing_id);
CREATE TABLE schema_version (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    description TEXT
);
INSERT INTO schema_version (version, description) VALUES ('1.0.0', 'Initial schema');
CREATE TRIGGER update_models_timestamp AFTER UPDATE ON models FOR EACH ROW
BEGIN UPDATE models SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id; END;
CREATE TRIGGER update_listings_timestamp AFTER UPDATE ON listings FOR EACH ROW
BEGIN UPDATE listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id; END;
CREATE TRIGGER update_scored_listings_timestamp AFTER UPDATE ON scored_listings FOR EACH ROW
BEGIN UPDATE scored_listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id; END;
CREATE TRIGGER update_quantized_listings_timestamp AFTER UPDATE ON quantized_listings FOR EACH ROW
BEGIN UPDATE quantized_listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id; END;
"""

DATA_TABLES = ("models", "listings", "scored_listings", "quantized_listings")

# Later releases: a nullable import_index on each data table, written inside the CREATE TABLE, with its own index.
LATER_RELEASE = PRE_LINEAGE.replace(
    "    import_id TEXT,\n    FOREIGN KEY", "    import_id TEXT,\n    import_index INTEGER,\n    FOREIGN KEY"
).replace(
    "    import_id TEXT, -- nullable: rows from before batches\n",
    "    import_id TEXT, -- nullable: rows from before batches\n    import_index INTEGER, -- 1..n in the batch\n",
) + "".join(f"CREATE INDEX idx_{t}_import_index ON {t}(import_index);\n" for t in DATA_TABLES)

# Databases upgraded by a separate SQL script: the same column added at the end of each table.
UPGRADE_SCRIPT = "".join(
    f"ALTER TABLE {t} ADD COLUMN import_index INTEGER;\nCREATE INDEX idx_{t}_import_index ON {t}(import_index);\n"
    for t in DATA_TABLES
)

# Made by a schema-migration tool: its own DDL style (VARCHAR, DATETIME, FLOAT, constraints at the end),
# its own index names, and its alembic_version table.
ALEMBIC = """
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO alembic_version VALUES ('4f2a9c1b7d3e');
CREATE TABLE import_batches (
	id INTEGER NOT NULL, 
	import_id VARCHAR(36) NOT NULL, 
	imported_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	source VARCHAR(100), 
	record_count INTEGER, 
	description TEXT, 
	PRIMARY KEY (id), 
	UNIQUE (import_id)
);
CREATE TABLE models (
	id INTEGER NOT NULL, 
	model VARCHAR(100) NOT NULL, 
	vram_gb INTEGER, 
	tdp_watts INTEGER, 
	mig_support INTEGER, 
	nvlink BOOLEAN, 
	generation VARCHAR(50), 
	cuda_cores INTEGER, 
	slot_width INTEGER, 
	pcie_generation INTEGER, 
	listing_count INTEGER, 
	min_price FLOAT, 
	median_price FLOAT, 
	max_price FLOAT, 
	avg_price FLOAT, 
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	import_id VARCHAR(36), 
	import_index INTEGER, 
	PRIMARY KEY (id), 
	UNIQUE (model), 
	FOREIGN KEY(import_id) REFERENCES import_batches (import_id) ON DELETE SET NULL
);
CREATE INDEX ix_models_import_index ON models (import_index);
CREATE TABLE listings (
	id INTEGER NOT NULL, 
	title VARCHAR(500) NOT NULL, 
	price FLOAT NOT NULL, 
	canonical_model VARCHAR(100) NOT NULL, 
	match_type VARCHAR(20) NOT NULL, 
	match_score FLOAT NOT NULL, 
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	import_id VARCHAR(36), 
	import_index INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(canonical_model) REFERENCES models (model) ON DELETE CASCADE, 
	FOREIGN KEY(import_id) REFERENCES import_batches (import_id) ON DELETE SET NULL
);
CREATE INDEX ix_listings_canonical_model ON listings (canonical_model);
CREATE INDEX ix_listings_import_id ON listings (import_id);
CREATE TABLE scored_listings (
	id INTEGER NOT NULL, 
	canonical_model VARCHAR(100) NOT NULL, 
	price FLOAT NOT NULL, 
	vram_gb INTEGER NOT NULL, 
	tdp_watts INTEGER NOT NULL, 
	mig_support INTEGER, 
	nvlink BOOLEAN, 
	generation VARCHAR(50), 
	cuda_cores INTEGER, 
	slot_width INTEGER, 
	pcie_generation INTEGER, 
	form_factor VARCHAR(50), 
	notes TEXT, 
	warnings TEXT, 
	score FLOAT NOT NULL, 
	condition VARCHAR(20), 
	quantity INTEGER, 
	min_order_qty INTEGER, 
	seller VARCHAR(200), 
	region VARCHAR(20), 
	source_url VARCHAR(1000), 
	source_type VARCHAR(20), 
	seen_at DATETIME, 
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	import_id VARCHAR(36), 
	import_index INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(canonical_model) REFERENCES models (model) ON DELETE CASCADE, 
	FOREIGN KEY(import_id) REFERENCES import_batches (import_id) ON DELETE SET NULL
);
CREATE INDEX ix_scored_listings_canonical_model ON scored_listings (canonical_model);
CREATE INDEX ix_scored_listings_score ON scored_listings (score);
CREATE INDEX ix_scored_listings_import_id ON scored_listings (import_id);
CREATE INDEX ix_scored_listings_import_index ON scored_listings (import_index);
CREATE TABLE quantized_listings (
	id INTEGER NOT NULL, 
	scored_listing_id INTEGER NOT NULL, 
	model_7b INTEGER NOT NULL, 
	model_13b INTEGER NOT NULL, 
	model_70b INTEGER NOT NULL, 
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	import_id VARCHAR(36), 
	import_index INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(scored_listing_id) REFERENCES scored_listings (id) ON DELETE CASCADE, 
	FOREIGN KEY(import_id) REFERENCES import_batches (import_id) ON DELETE SET NULL
);
CREATE TABLE schema_version (
	id INTEGER NOT NULL, 
	version VARCHAR(20) NOT NULL, 
	applied_at DATETIME, 
	description TEXT, 
	PRIMARY KEY (id)
);
INSERT INTO schema_version (version, description) VALUES ('1.2.0', 'alembic head 4f2a9c1b7d3e');
"""

# Newer releases: forecasting tables the project does not own, with their own indexes, keys and trigger.
FORECASTING = """
CREATE TABLE listing_snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scored_listing_id INTEGER NOT NULL REFERENCES scored_listings(id) ON DELETE CASCADE,
    snapshot_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    price REAL NOT NULL,
    import_id TEXT REFERENCES import_batches(import_id) ON DELETE SET NULL
);
CREATE INDEX idx_listing_snapshots_listing ON listing_snapshots(scored_listing_id, snapshot_at);
CREATE TABLE listing_deltas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_url TEXT NOT NULL,
    from_snapshot_id INTEGER REFERENCES listing_snapshots(id) ON DELETE SET NULL,
    to_snapshot_id INTEGER NOT NULL REFERENCES listing_snapshots(id) ON DELETE CASCADE,
    price_delta REAL,
    computed_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX idx_listing_deltas_pair ON listing_deltas(from_snapshot_id, to_snapshot_id);
CREATE TRIGGER snapshot_scored_listing AFTER INSERT ON scored_listings FOR EACH ROW
BEGIN
    INSERT INTO listing_snapshots (scored_listing_id, price, import_id) VALUES (NEW.id, NEW.price, NEW.import_id);
END;
CREATE VIEW latest_prices AS SELECT canonical_model, MIN(price) AS min_price FROM scored_listings GROUP BY canonical_model;
"""


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    conn.executescript(script)


def fill(conn: sqlite3.Connection, numbered: bool) -> None:
    """Rows as the old store wrote them, then the dirt found in real files.

    - batch ``b-2024-05-01`` (3 listings) and ``nightly 2024/05/02`` (2), written through the old store's
      path (INSERT OR IGNORE the model, then the listings); with ``numbered`` the later releases' numbering
      (1..n on scored_listings, the position of a model's first listing on models);
    - rows from before batches (import_id NULL), a NULL-only optional column, unicode and extreme numbers;
    - a batch whose import_batches row was deleted by hand (its rows still name it);
    - a quantized listing whose scored listing is gone (the old store re-sent a batch under the same id);
    - a rolled-over id: a deleted last row, so AUTOINCREMENT's high-water mark is above the highest id.
    """
    idx = ", import_index" if numbered else ""
    mark = ", ?" if numbered else ""

    def num(value):
        return (value,) if numbered else ()

    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(
        "INSERT INTO import_batches (import_id, imported_at, source, record_count, description) VALUES "
        "('b-2024-05-01', '2024-05-01 10:00:00', 'api', 3, 'Import batch b-2024-05-01'), "
        "('nightly 2024/05/02', '2024-05-02 03:00:00', 'api', 2, 'Import batch nightly 2024/05/02'), "
        "('b-deleted', '2024-05-03 09:00:00', 'api', 1, 'Import batch b-deleted')"
    )
    models = [
        ("H100_PCIE_80GB", 80, 350, 7, 1, "Hopper", 14592, 2, 5, None, "b-2024-05-01", *num(1)),
        ("RTX_4090", 24, 450, 0, 0, "Ada", 16384, 3, 4, None, "b-2024-05-01", *num(3)),
        ("A100_40GB_PCIE", 40, 250, 7, 1, "Ampere", 6912, 2, 4, None, None, *num(None)),
        ("L40S", 48, 350, 0, 0, "Ada", 18176, 2, 4, None, "b-deleted", *num(1)),
        ("Ünïcødé_GPU", 4, 60, 0, 0, None, None, None, None, 1.5e308, "nightly 2024/05/02", *num(2)),
    ]
    conn.executemany(
        "INSERT OR IGNORE INTO models (model, vram_gb, tdp_watts, mig_support, nvlink, generation, cuda_cores, "
        f"slot_width, pcie_generation, max_price, import_id{idx}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?{mark})",
        models,
    )
    scored = [
        ("H100_PCIE_80GB", 25512.0, 80, 350, 0.91, "new", "US", "https://m.example/1", "b-2024-05-01", *num(1)),
        ("H100_PCIE_80GB", 24000.5, 80, 350, 0.88, None, None, "https://m.example/2", "b-2024-05-01", *num(2)),
        ("RTX_4090", 1799.99, 24, 450, 0.5, "used", "EU", None, "b-2024-05-01", *num(3)),
        (
            "Ünïcødé_GPU",
            0.0,
            4,
            60,
            -1e-300,
            "refurbished",
            "APAC",
            "https://m.example/ü?a=1&b=2",
            "nightly 2024/05/02",
            *num(1),
        ),
        ("H100_PCIE_80GB", 1.7976931348623157e308, 80, 350, 100.0, None, None, None, "nightly 2024/05/02", *num(2)),
        ("A100_40GB_PCIE", 9000.0, 40, 250, 0.4, "new", "US", "https://m.example/3", None, *num(None)),
        ("A100_40GB_PCIE", 9100.0, 40, 250, 0.41, None, None, None, None, *num(None)),
        ("L40S", 7000.0, 48, 350, 0.7, "new", "US", "https://m.example/4", "b-deleted", *num(1)),
        ("L40S", 7001.0, 48, 350, 0.7, "new", "US", "https://m.example/5", "b-deleted", *num(2)),
    ]
    conn.executemany(
        "INSERT INTO scored_listings (canonical_model, price, vram_gb, tdp_watts, score, condition, region, "
        f"source_url, import_id{idx}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?{mark})",
        scored,
    )
    conn.executemany(
        f"INSERT INTO listings (title, price, canonical_model, match_type, match_score, import_id{idx}) "
        f"VALUES (?, ?, ?, ?, ?, ?{mark})",
        [
            (
                'NVIDIA H100 PCIe 80GB — "like new", boxed',
                25512.0,
                "H100_PCIE_80GB",
                "exact",
                1.0,
                "b-2024-05-01",
                *num(1),
            ),
            ("A100 40G", 9000.0, "A100_40GB_PCIE", "fuzzy", 0.83, None, *num(None)),
        ],
    )
    conn.executemany(
        f"INSERT INTO quantized_listings (scored_listing_id, model_7b, model_13b, model_70b, import_id{idx}) "
        f"VALUES (?, ?, ?, ?, ?{mark})",
        [(1, 1, 1, 0, "b-2024-05-01", *num(1)), (2, 1, 1, 1, "b-2024-05-01", *num(2)), (6, 1, 0, 0, None, *num(None))],
    )
    conn.execute("PRAGMA foreign_keys = OFF")
    # The dirt: a batch record deleted by hand, a quantized listing whose scored listing is gone, a deleted last row.
    conn.execute("DELETE FROM import_batches WHERE import_id = 'b-deleted'")
    conn.execute("DELETE FROM scored_listings WHERE id = 2")
    conn.execute(
        "INSERT INTO scored_listings (canonical_model, price, vram_gb, tdp_watts, score, import_id) "
        "VALUES ('RTX_4090', 1.0, 24, 450, 0.1, 'b-2024-05-01')"
    )
    conn.execute("DELETE FROM scored_listings WHERE id = (SELECT MAX(id) FROM scored_listings)")
    conn.execute("UPDATE models SET listing_count = listing_count + 1 WHERE model = 'RTX_4090'")


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None)


def pre_lineage(path: Path) -> None:
    conn = _open(path)
    _execute_script(conn, PRE_LINEAGE)
    fill(conn, numbered=False)
    conn.close()


def later_release(path: Path) -> None:
    conn = _open(path)
    _execute_script(conn, LATER_RELEASE)
    fill(conn, numbered=True)
    conn.close()


def upgrade_script(path: Path) -> None:
    conn = _open(path)
    _execute_script(conn, PRE_LINEAGE)
    fill(conn, numbered=False)
    _execute_script(conn, UPGRADE_SCRIPT)
    # Rows written after the upgrade carry a number; invalid ones too (a duplicate, a zero, a text).
    conn.execute("INSERT INTO import_batches (import_id, source, record_count) VALUES ('after-upgrade', 'api', 4)")
    conn.executemany(
        "INSERT INTO scored_listings (canonical_model, price, vram_gb, tdp_watts, score, import_id, import_index) "
        "VALUES ('RTX_4090', ?, 24, 450, 0.5, 'after-upgrade', ?)",
        [(1500.0, 2), (1501.0, 2), (1502.0, 0), (1503.0, "seven")],
    )
    conn.close()


def alembic(path: Path) -> None:
    conn = _open(path)
    _execute_script(conn, ALEMBIC)
    fill(conn, numbered=True)
    conn.close()


def forecasting(path: Path) -> None:
    conn = _open(path)
    _execute_script(conn, LATER_RELEASE)
    _execute_script(conn, FORECASTING)
    fill(conn, numbered=True)
    conn.execute(
        "INSERT INTO listing_deltas (source_url, from_snapshot_id, to_snapshot_id, price_delta) "
        "VALUES ('https://m.example/1', NULL, 1, NULL), ('https://m.example/1', 1, 3, -1511.5)"
    )
    conn.close()


VARIANTS: Dict[str, Callable[[Path], None]] = {
    "pre_lineage": pre_lineage,
    "later_release": later_release,
    "upgrade_script": upgrade_script,
    "alembic": alembic,
    "forecasting": forecasting,
}


def dump(conn: sqlite3.Connection) -> dict:
    """Every schema object with its SQL and every table's rows with their rowids, glyph's bookkeeping aside.

    sqlite_sequence is compared by name: SQLite gives its rows new rowids when a table is rebuilt.
    """
    objects = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master "
        "WHERE name NOT LIKE 'glyph\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite_autoindex_glyph\\_%' ESCAPE '\\' "
        "ORDER BY type, name"
    ).fetchall()
    rows = {}
    for kind, name, _, _ in objects:
        if kind != "table":
            continue
        if name == "sqlite_sequence":
            rows[name] = sorted(conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        else:
            rows[name] = conn.execute(f'SELECT rowid, * FROM "{name}" ORDER BY rowid').fetchall()
    return {"objects": objects, "rows": rows}


def old_store_writes(conn: sqlite3.Connection, numbered: bool) -> None:
    """What the old store's code does on an import: a batch, its models, its listings (foreign keys on)."""
    idx = ", import_index" if numbered else ""
    mark = ", 1" if numbered else ""
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(
        "INSERT INTO import_batches (import_id, source, record_count, description) "
        "VALUES ('old-store-again', 'api', 1, 'Import batch old-store-again')"
    )
    conn.execute(
        f"INSERT OR IGNORE INTO models (model, vram_gb, tdp_watts, import_id{idx}) VALUES ('RTX_A5000', 24, 230, 'old-store-again'{mark})"
    )
    conn.execute(
        f"INSERT INTO scored_listings (canonical_model, price, vram_gb, tdp_watts, score, import_id{idx}) "
        f"VALUES ('RTX_A5000', 2100.0, 24, 230, 0.6, 'old-store-again'{mark})"
    )
    conn.execute("UPDATE scored_listings SET price = 2000.0 WHERE import_id = 'old-store-again'")
    conn.execute("PRAGMA foreign_keys = OFF")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write a database as one of the old store's releases left it.")
    parser.add_argument("path", help="the new database file")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="pre_lineage")
    options = parser.parse_args()
    if Path(options.path).exists():
        parser.error(f"{options.path} already exists")
    VARIANTS[options.variant](Path(options.path))
    print(f"Wrote {options.path}: the old store's {options.variant.replace('_', ' ')} database, dirty rows included")
