-- Inherited schema: import batches, models, raw, scored and quantized listings, schema_version
CREATE TABLE import_batches (
    id INTEGER PRIMARY KEY,
    import_id TEXT NOT NULL UNIQUE,
    imported_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    source TEXT,
    record_count INTEGER DEFAULT 0,
    description TEXT
);

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

CREATE INDEX idx_scored_listings_canonical_model ON scored_listings(canonical_model);
CREATE INDEX idx_scored_listings_score ON scored_listings(score);
CREATE INDEX idx_scored_listings_region ON scored_listings(region);
CREATE INDEX idx_scored_listings_seen_at ON scored_listings(seen_at);
CREATE INDEX idx_scored_listings_import_id ON scored_listings(import_id);

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

CREATE TABLE schema_version (
    id INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    description TEXT
);

INSERT INTO schema_version (version, description) VALUES ('1.0.0', 'Initial schema');

CREATE TRIGGER trg_models_updated_at AFTER UPDATE ON models
BEGIN
    UPDATE models SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

CREATE TRIGGER trg_listings_updated_at AFTER UPDATE ON listings
BEGIN
    UPDATE listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

CREATE TRIGGER trg_scored_listings_updated_at AFTER UPDATE ON scored_listings
BEGIN
    UPDATE scored_listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;

CREATE TRIGGER trg_quantized_listings_updated_at AFTER UPDATE ON quantized_listings
BEGIN
    UPDATE quantized_listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id;
END;
