-- Drop import lineage: back to the inherited schema, keeping every row and every value of its columns
--
-- import_index and the new import_batches columns go; rows of the legacy batch get their NULL import_id
-- back; the records that 0002 made (status legacy or recovered) are removed.

DROP TRIGGER trg_models_updated_at;
DROP INDEX idx_models_import;
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
    import_id TEXT REFERENCES import_batches(import_id) ON DELETE SET NULL
);
INSERT INTO models (id, model, vram_gb, tdp_watts, mig_support, nvlink, generation, cuda_cores, slot_width, pcie_generation, listing_count, min_price, median_price, max_price, avg_price, created_at, updated_at, import_id)
SELECT id, model, vram_gb, tdp_watts, mig_support, nvlink, generation, cuda_cores, slot_width, pcie_generation, listing_count, min_price, median_price, max_price, avg_price, created_at, updated_at, NULLIF(import_id, 'dbaea5cd-0a4d-52ca-88af-4737290a1213')
FROM _glyph_old_models
ORDER BY id;
DROP TABLE _glyph_old_models;
CREATE TRIGGER trg_models_updated_at AFTER UPDATE ON models
BEGIN
    UPDATE models SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

DROP TRIGGER trg_listings_updated_at;
DROP INDEX idx_listings_import;
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
    import_id TEXT
);
INSERT INTO listings (id, title, price, canonical_model, match_type, match_score, created_at, updated_at, import_id)
SELECT id, title, price, canonical_model, match_type, match_score, created_at, updated_at, NULLIF(import_id, 'dbaea5cd-0a4d-52ca-88af-4737290a1213')
FROM _glyph_old_listings
ORDER BY id;
DROP TABLE _glyph_old_listings;
CREATE TRIGGER trg_listings_updated_at AFTER UPDATE ON listings
BEGIN
    UPDATE listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

DROP TRIGGER trg_scored_listings_updated_at;
DROP INDEX idx_scored_listings_canonical_model;
DROP INDEX idx_scored_listings_score;
DROP INDEX idx_scored_listings_region;
DROP INDEX idx_scored_listings_seen_at;
DROP INDEX idx_scored_listings_import;
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
    import_id TEXT
);
INSERT INTO scored_listings (id, canonical_model, price, vram_gb, tdp_watts, mig_support, nvlink, generation, cuda_cores, slot_width, pcie_generation, form_factor, notes, warnings, score, condition, quantity, min_order_qty, seller, region, source_url, source_type, seen_at, created_at, updated_at, import_id)
SELECT id, canonical_model, price, vram_gb, tdp_watts, mig_support, nvlink, generation, cuda_cores, slot_width, pcie_generation, form_factor, notes, warnings, score, condition, quantity, min_order_qty, seller, region, source_url, source_type, seen_at, created_at, updated_at, NULLIF(import_id, 'dbaea5cd-0a4d-52ca-88af-4737290a1213')
FROM _glyph_old_scored_listings
ORDER BY id;
DROP TABLE _glyph_old_scored_listings;
CREATE INDEX idx_scored_listings_canonical_model ON scored_listings(canonical_model);
CREATE INDEX idx_scored_listings_score ON scored_listings(score);
CREATE INDEX idx_scored_listings_region ON scored_listings(region);
CREATE INDEX idx_scored_listings_seen_at ON scored_listings(seen_at);
CREATE INDEX idx_scored_listings_import_id ON scored_listings(import_id);
CREATE TRIGGER trg_scored_listings_updated_at AFTER UPDATE ON scored_listings
BEGIN
    UPDATE scored_listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

DROP TRIGGER trg_quantized_listings_updated_at;
DROP INDEX idx_quantized_listings_import;
ALTER TABLE quantized_listings RENAME TO _glyph_old_quantized_listings;
CREATE TABLE quantized_listings (
    id INTEGER PRIMARY KEY,
    scored_listing_id INTEGER NOT NULL REFERENCES scored_listings(id) ON DELETE CASCADE,
    model_7b INTEGER NOT NULL,
    model_13b INTEGER NOT NULL,
    model_70b INTEGER NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    import_id TEXT
);
INSERT INTO quantized_listings (id, scored_listing_id, model_7b, model_13b, model_70b, created_at, updated_at, import_id)
SELECT id, scored_listing_id, model_7b, model_13b, model_70b, created_at, updated_at, NULLIF(import_id, 'dbaea5cd-0a4d-52ca-88af-4737290a1213')
FROM _glyph_old_quantized_listings
ORDER BY id;
DROP TABLE _glyph_old_quantized_listings;
CREATE TRIGGER trg_quantized_listings_updated_at AFTER UPDATE ON quantized_listings
BEGIN
    UPDATE quantized_listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

-- The legacy batch goes by its id too: rolled back, its status is no longer 'legacy'.
DELETE FROM import_batches WHERE status IN ('legacy', 'recovered') OR import_id = 'dbaea5cd-0a4d-52ca-88af-4737290a1213';
ALTER TABLE import_batches RENAME TO _glyph_old_import_batches;
CREATE TABLE import_batches (
    id INTEGER PRIMARY KEY,
    import_id TEXT NOT NULL UNIQUE,
    imported_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    source TEXT,
    record_count INTEGER DEFAULT 0,
    description TEXT
);
INSERT INTO import_batches (id, import_id, imported_at, source, record_count, description)
SELECT id, import_id, imported_at, source, record_count, description FROM _glyph_old_import_batches;
DROP TABLE _glyph_old_import_batches;
