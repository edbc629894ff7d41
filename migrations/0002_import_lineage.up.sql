-- Import lineage: every row carries import_id and import_index; import_batches records how each batch arrived
--
-- Each table is rebuilt (renamed away, created anew, copied, dropped) so that NOT NULL, CHECK and
-- REFERENCES hold in the schema itself. The runner turns on legacy_alter_table and turns off foreign
-- key enforcement for the rebuild, as SQLite's documented table-rebuild procedure asks, and refuses the
-- step if foreign_key_check finds a broken key that was not broken before it.
--
-- Rows that named no batch go to one legacy batch, dbaea5cd-0a4d-52ca-88af-4737290a1213 (a uuid5 of a
-- fixed name, so that up, down and up again give identical rows). A batch named by rows but missing
-- from import_batches gets a record with status 'recovered'. Within a batch rows are numbered 1..n in
-- rowid order.

ALTER TABLE import_batches RENAME TO _glyph_old_import_batches;
CREATE TABLE import_batches (
    id INTEGER PRIMARY KEY,
    import_id TEXT NOT NULL UNIQUE,
    imported_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    source TEXT, -- where the file came from: a marketplace, broker or retailer name
    record_count INTEGER DEFAULT 0, -- scored_listings rows the batch wrote
    description TEXT,
    filename TEXT, -- the file's name as the client or the command line gave it
    sha256 TEXT, -- hex SHA-256 of the file's bytes
    bytes INTEGER, -- size of the file in bytes
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    status TEXT NOT NULL DEFAULT 'complete' CHECK (status IN ('pending', 'complete', 'failed', 'rolled_back', 'legacy', 'recovered')), -- pending, complete, failed (kept no rows), rolled_back, legacy (rows from before lineage), recovered (named by rows, record rebuilt)
    actor TEXT, -- id of the actor who imported it; NULL from the command line
    error TEXT, -- why a failed batch failed
    rolled_back_at TIMESTAMP,
    rolled_back_by TEXT, -- actor id, or the command line user
    label TEXT GENERATED ALWAYS AS (COALESCE(filename, description, import_id) || ' · ' || substr(imported_at, 1, 19)) VIRTUAL -- how Datasette names the batch in links and facets
);
INSERT INTO import_batches (id, import_id, imported_at, source, record_count, description, status)
SELECT id, import_id, imported_at, source, record_count, description, 'complete' FROM _glyph_old_import_batches;
DROP TABLE _glyph_old_import_batches;
CREATE INDEX idx_import_batches_imported_at ON import_batches(imported_at);

-- A batch named by rows but missing from import_batches: found through the import_id index where a table
-- has one, so that only the rows of such batches are read.
WITH unrecorded (import_id) AS (
    SELECT DISTINCT import_id FROM scored_listings WHERE import_id IS NOT NULL
    UNION SELECT import_id FROM listings WHERE import_id IS NOT NULL
    UNION SELECT import_id FROM models WHERE import_id IS NOT NULL
    UNION SELECT import_id FROM quantized_listings WHERE import_id IS NOT NULL
    EXCEPT SELECT import_id FROM import_batches
)
INSERT INTO import_batches (import_id, imported_at, record_count, description, status)
SELECT import_id, COALESCE(MIN(created_at), CURRENT_TIMESTAMP), SUM(is_scored), 'Batch named by rows but missing from import_batches', 'recovered'
FROM (
    SELECT import_id, created_at, 1 AS is_scored FROM scored_listings WHERE import_id IN (SELECT import_id FROM unrecorded)
    UNION ALL SELECT import_id, created_at, 0 FROM listings WHERE import_id IN (SELECT import_id FROM unrecorded)
    UNION ALL SELECT import_id, created_at, 0 FROM models WHERE import_id IN (SELECT import_id FROM unrecorded)
    UNION ALL SELECT import_id, created_at, 0 FROM quantized_listings WHERE import_id IN (SELECT import_id FROM unrecorded)
)
GROUP BY import_id
ORDER BY MIN(created_at), import_id;

-- Rows that name no batch: one legacy batch holds them all.
INSERT INTO import_batches (import_id, imported_at, record_count, description, status)
SELECT 'dbaea5cd-0a4d-52ca-88af-4737290a1213', COALESCE(MIN(created_at), CURRENT_TIMESTAMP), SUM(is_scored), 'Rows stored before import lineage', 'legacy'
FROM (
    SELECT created_at, 1 AS is_scored FROM scored_listings WHERE import_id IS NULL
    UNION ALL SELECT created_at, 0 FROM listings WHERE import_id IS NULL
    UNION ALL SELECT created_at, 0 FROM models WHERE import_id IS NULL
    UNION ALL SELECT created_at, 0 FROM quantized_listings WHERE import_id IS NULL
)
HAVING COUNT(*) > 0;

-- Each row's import_index, computed from (id, import_id) alone before the copy: numbering narrow rows, in
-- the order of the import_id index where there is one, is much cheaper than sorting whole rows.
CREATE TEMP TABLE _glyph_import_index (
    id INTEGER PRIMARY KEY, -- rowid of the row being copied
    import_index INTEGER NOT NULL
);

DROP TRIGGER trg_models_updated_at;
INSERT INTO temp._glyph_import_index (id, import_index)
SELECT id, ROW_NUMBER() OVER (PARTITION BY import_id ORDER BY id) FROM models;
ALTER TABLE models RENAME TO _glyph_old_models;
CREATE TABLE models (
    id INTEGER PRIMARY KEY,
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
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    import_id TEXT NOT NULL REFERENCES import_batches(import_id), -- the batch that wrote this row
    import_index INTEGER NOT NULL CHECK (import_index >= 1) -- the row's 1-based position in its batch
);
INSERT INTO models (id, model, vram_gb, tdp_watts, mig_support, nvlink, generation, cuda_cores, slot_width, pcie_generation, listing_count, min_price, median_price, max_price, avg_price, created_at, updated_at, import_id, import_index)
SELECT o.id, o.model, o.vram_gb, o.tdp_watts, o.mig_support, o.nvlink, o.generation, o.cuda_cores, o.slot_width, o.pcie_generation, o.listing_count, o.min_price, o.median_price, o.max_price, o.avg_price, o.created_at, o.updated_at, COALESCE(o.import_id, 'dbaea5cd-0a4d-52ca-88af-4737290a1213'), n.import_index
FROM _glyph_old_models AS o JOIN temp._glyph_import_index AS n ON n.id = o.id
ORDER BY o.id;
DROP TABLE _glyph_old_models;
DELETE FROM temp._glyph_import_index;
CREATE UNIQUE INDEX idx_models_import ON models(import_id, import_index);
CREATE TRIGGER trg_models_updated_at AFTER UPDATE ON models
BEGIN
    UPDATE models SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

DROP TRIGGER trg_listings_updated_at;
INSERT INTO temp._glyph_import_index (id, import_index)
SELECT id, ROW_NUMBER() OVER (PARTITION BY import_id ORDER BY id) FROM listings;
ALTER TABLE listings RENAME TO _glyph_old_listings;
CREATE TABLE listings (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    price REAL NOT NULL,
    canonical_model TEXT NOT NULL REFERENCES models(model),
    match_type TEXT NOT NULL,
    match_score REAL NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    import_id TEXT NOT NULL REFERENCES import_batches(import_id), -- the batch that wrote this row
    import_index INTEGER NOT NULL CHECK (import_index >= 1) -- the row's 1-based position in its batch
);
INSERT INTO listings (id, title, price, canonical_model, match_type, match_score, created_at, updated_at, import_id, import_index)
SELECT o.id, o.title, o.price, o.canonical_model, o.match_type, o.match_score, o.created_at, o.updated_at, COALESCE(o.import_id, 'dbaea5cd-0a4d-52ca-88af-4737290a1213'), n.import_index
FROM _glyph_old_listings AS o JOIN temp._glyph_import_index AS n ON n.id = o.id
ORDER BY o.id;
DROP TABLE _glyph_old_listings;
DELETE FROM temp._glyph_import_index;
CREATE UNIQUE INDEX idx_listings_import ON listings(import_id, import_index);
CREATE TRIGGER trg_listings_updated_at AFTER UPDATE ON listings
BEGIN
    UPDATE listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

DROP TRIGGER trg_scored_listings_updated_at;
DROP INDEX idx_scored_listings_canonical_model;
DROP INDEX idx_scored_listings_score;
DROP INDEX idx_scored_listings_region;
DROP INDEX idx_scored_listings_seen_at;
INSERT INTO temp._glyph_import_index (id, import_index)
SELECT id, ROW_NUMBER() OVER (PARTITION BY import_id ORDER BY id) FROM scored_listings;
DROP INDEX idx_scored_listings_import_id;
ALTER TABLE scored_listings RENAME TO _glyph_old_scored_listings;
CREATE TABLE scored_listings (
    id INTEGER PRIMARY KEY,
    canonical_model TEXT NOT NULL REFERENCES models(model),
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
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    import_id TEXT NOT NULL REFERENCES import_batches(import_id), -- the batch that wrote this row
    import_index INTEGER NOT NULL CHECK (import_index >= 1) -- the row's 1-based position in its batch
);
INSERT INTO scored_listings (id, canonical_model, price, vram_gb, tdp_watts, mig_support, nvlink, generation, cuda_cores, slot_width, pcie_generation, form_factor, notes, warnings, score, condition, quantity, min_order_qty, seller, region, source_url, source_type, seen_at, created_at, updated_at, import_id, import_index)
SELECT o.id, o.canonical_model, o.price, o.vram_gb, o.tdp_watts, o.mig_support, o.nvlink, o.generation, o.cuda_cores, o.slot_width, o.pcie_generation, o.form_factor, o.notes, o.warnings, o.score, o.condition, o.quantity, o.min_order_qty, o.seller, o.region, o.source_url, o.source_type, o.seen_at, o.created_at, o.updated_at, COALESCE(o.import_id, 'dbaea5cd-0a4d-52ca-88af-4737290a1213'), n.import_index
FROM _glyph_old_scored_listings AS o JOIN temp._glyph_import_index AS n ON n.id = o.id
ORDER BY o.id;
DROP TABLE _glyph_old_scored_listings;
DELETE FROM temp._glyph_import_index;
CREATE INDEX idx_scored_listings_canonical_model ON scored_listings(canonical_model);
CREATE INDEX idx_scored_listings_score ON scored_listings(score);
CREATE INDEX idx_scored_listings_region ON scored_listings(region);
CREATE INDEX idx_scored_listings_seen_at ON scored_listings(seen_at);
CREATE UNIQUE INDEX idx_scored_listings_import ON scored_listings(import_id, import_index);
CREATE TRIGGER trg_scored_listings_updated_at AFTER UPDATE ON scored_listings
BEGIN
    UPDATE scored_listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

DROP TRIGGER trg_quantized_listings_updated_at;
INSERT INTO temp._glyph_import_index (id, import_index)
SELECT id, ROW_NUMBER() OVER (PARTITION BY import_id ORDER BY id) FROM quantized_listings;
ALTER TABLE quantized_listings RENAME TO _glyph_old_quantized_listings;
CREATE TABLE quantized_listings (
    id INTEGER PRIMARY KEY,
    scored_listing_id INTEGER NOT NULL REFERENCES scored_listings(id) ON DELETE CASCADE,
    model_7b INTEGER NOT NULL,
    model_13b INTEGER NOT NULL,
    model_70b INTEGER NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    import_id TEXT NOT NULL REFERENCES import_batches(import_id), -- the batch that wrote this row
    import_index INTEGER NOT NULL CHECK (import_index >= 1) -- the row's 1-based position in its batch
);
INSERT INTO quantized_listings (id, scored_listing_id, model_7b, model_13b, model_70b, created_at, updated_at, import_id, import_index)
SELECT o.id, o.scored_listing_id, o.model_7b, o.model_13b, o.model_70b, o.created_at, o.updated_at, COALESCE(o.import_id, 'dbaea5cd-0a4d-52ca-88af-4737290a1213'), n.import_index
FROM _glyph_old_quantized_listings AS o JOIN temp._glyph_import_index AS n ON n.id = o.id
ORDER BY o.id;
DROP TABLE _glyph_old_quantized_listings;
DELETE FROM temp._glyph_import_index;
CREATE UNIQUE INDEX idx_quantized_listings_import ON quantized_listings(import_id, import_index);
CREATE TRIGGER trg_quantized_listings_updated_at AFTER UPDATE ON quantized_listings
BEGIN
    UPDATE quantized_listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

DROP TABLE temp._glyph_import_index;
