-- Inherited schema: the old store's pre-lineage release (batches, models, raw, scored and quantized listings)
--
-- A new database starts where the old store's databases start, so that the lineage migration after it
-- meets the same schema on a new file as on an adopted one. A database the old store made is recognised
-- as being at this version and is never touched by it.
-- supersedes: aa572caeb6f5fb4ae18e89e22e31341534fae992226ba5b95935f79f5b2d00d8

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
    import_id TEXT REFERENCES import_batches(import_id) ON DELETE SET NULL
);
CREATE INDEX idx_models_model ON models(model);

CREATE TABLE listings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    price REAL NOT NULL,
    canonical_model TEXT NOT NULL REFERENCES models(model) ON DELETE CASCADE,
    match_type TEXT NOT NULL,
    match_score REAL NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    import_id TEXT REFERENCES import_batches(import_id) ON DELETE SET NULL
);
CREATE INDEX idx_listings_canonical_model ON listings(canonical_model);
CREATE INDEX idx_listings_import_id ON listings(import_id);

CREATE TABLE scored_listings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    canonical_model TEXT NOT NULL REFERENCES models(model) ON DELETE CASCADE,
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
    import_id TEXT REFERENCES import_batches(import_id) ON DELETE SET NULL
);
CREATE INDEX idx_scored_listings_canonical_model ON scored_listings(canonical_model);
CREATE INDEX idx_scored_listings_score ON scored_listings(score);
CREATE INDEX idx_scored_listings_region ON scored_listings(region);
CREATE INDEX idx_scored_listings_seen_at ON scored_listings(seen_at);
CREATE INDEX idx_scored_listings_import_id ON scored_listings(import_id);

CREATE TABLE quantized_listings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scored_listing_id INTEGER NOT NULL REFERENCES scored_listings(id) ON DELETE CASCADE,
    model_7b INTEGER NOT NULL,
    model_13b INTEGER NOT NULL,
    model_70b INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    import_id TEXT REFERENCES import_batches(import_id) ON DELETE SET NULL
);
CREATE INDEX idx_quantized_listings_scored_listing_id ON quantized_listings(scored_listing_id);

CREATE TABLE schema_version (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL,
    applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    description TEXT
);
INSERT INTO schema_version (version, description) VALUES ('1.0.0', 'Initial schema');

CREATE TRIGGER update_models_timestamp AFTER UPDATE ON models
BEGIN
    UPDATE models SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

CREATE TRIGGER update_listings_timestamp AFTER UPDATE ON listings
BEGIN
    UPDATE listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

CREATE TRIGGER update_scored_listings_timestamp AFTER UPDATE ON scored_listings
BEGIN
    UPDATE scored_listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

CREATE TRIGGER update_quantized_listings_timestamp AFTER UPDATE ON quantized_listings
BEGIN
    UPDATE quantized_listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;
