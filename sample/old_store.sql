-- A database as the old store's pre-lineage release left it, dirty rows included (see README, Migrations)
BEGIN TRANSACTION;
CREATE TABLE import_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    import_id TEXT NOT NULL UNIQUE,
    imported_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    source TEXT,
    record_count INTEGER DEFAULT 0,
    description TEXT
);
INSERT INTO "import_batches" VALUES(1,'b-2024-05-01','2024-05-01 10:00:00','api',3,'Import batch b-2024-05-01');
INSERT INTO "import_batches" VALUES(2,'nightly 2024/05/02','2024-05-02 03:00:00','api',2,'Import batch nightly 2024/05/02');
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
INSERT INTO "listings" VALUES(1,'NVIDIA H100 PCIe 80GB — "like new", boxed',25512.0,'H100_PCIE_80GB','exact',1.0,'2026-12-02 00:12:48','2026-12-02 00:12:48','b-2024-05-01');
INSERT INTO "listings" VALUES(2,'A100 40G',9000.0,'A100_40GB_PCIE','fuzzy',0.83,'2026-12-02 00:12:48','2026-12-02 00:12:48',NULL);
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
INSERT INTO "models" VALUES(1,'H100_PCIE_80GB',80,350,7,1,'Hopper',14592,2,5,0,NULL,NULL,NULL,NULL,'2026-12-02 00:12:48','2026-12-02 00:12:48','b-2024-05-01');
INSERT INTO "models" VALUES(2,'RTX_4090',24,450,0,0,'Ada',16384,3,4,1,NULL,NULL,NULL,NULL,'2026-12-02 00:12:48','2026-12-02 00:12:48','b-2024-05-01');
INSERT INTO "models" VALUES(3,'A100_40GB_PCIE',40,250,7,1,'Ampere',6912,2,4,0,NULL,NULL,NULL,NULL,'2026-12-02 00:12:48','2026-12-02 00:12:48',NULL);
INSERT INTO "models" VALUES(4,'L40S',48,350,0,0,'Ada',18176,2,4,0,NULL,NULL,NULL,NULL,'2026-12-02 00:12:48','2026-12-02 00:12:48','b-deleted');
INSERT INTO "models" VALUES(5,'Ünïcødé_GPU',4,60,0,0,NULL,NULL,NULL,NULL,0,NULL,NULL,1.5e+308,NULL,'2026-12-02 00:12:48','2026-12-02 00:12:48','nightly 2024/05/02');
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
INSERT INTO "quantized_listings" VALUES(1,1,1,1,0,'2026-12-02 00:12:48','2026-12-02 00:12:48','b-2024-05-01');
INSERT INTO "quantized_listings" VALUES(2,2,1,1,1,'2026-12-02 00:12:48','2026-12-02 00:12:48','b-2024-05-01');
INSERT INTO "quantized_listings" VALUES(3,6,1,0,0,'2026-12-02 00:12:48','2026-12-02 00:12:48',NULL);
CREATE TABLE schema_version (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    description TEXT
);
INSERT INTO "schema_version" VALUES(1,'1.0.0','2026-12-02 00:12:48','Initial schema');
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
INSERT INTO "scored_listings" VALUES(1,'H100_PCIE_80GB',25512.0,80,350,0,0,NULL,NULL,NULL,NULL,'Standard',NULL,NULL,0.91,'new',NULL,NULL,NULL,'US','https://m.example/1',NULL,NULL,'2026-12-02 00:12:48','2026-12-02 00:12:48','b-2024-05-01');
INSERT INTO "scored_listings" VALUES(3,'RTX_4090',1799.99,24,450,0,0,NULL,NULL,NULL,NULL,'Standard',NULL,NULL,0.5,'used',NULL,NULL,NULL,'EU',NULL,NULL,NULL,'2026-12-02 00:12:48','2026-12-02 00:12:48','b-2024-05-01');
INSERT INTO "scored_listings" VALUES(4,'Ünïcødé_GPU',0.0,4,60,0,0,NULL,NULL,NULL,NULL,'Standard',NULL,NULL,-1.0e-300,'refurbished',NULL,NULL,NULL,'APAC','https://m.example/ü?a=1&b=2',NULL,NULL,'2026-12-02 00:12:48','2026-12-02 00:12:48','nightly 2024/05/02');
INSERT INTO "scored_listings" VALUES(5,'H100_PCIE_80GB',1.79769313486231562234e+308,80,350,0,0,NULL,NULL,NULL,NULL,'Standard',NULL,NULL,100.0,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'2026-12-02 00:12:48','2026-12-02 00:12:48','nightly 2024/05/02');
INSERT INTO "scored_listings" VALUES(6,'A100_40GB_PCIE',9000.0,40,250,0,0,NULL,NULL,NULL,NULL,'Standard',NULL,NULL,0.4,'new',NULL,NULL,NULL,'US','https://m.example/3',NULL,NULL,'2026-12-02 00:12:48','2026-12-02 00:12:48',NULL);
INSERT INTO "scored_listings" VALUES(7,'A100_40GB_PCIE',9100.0,40,250,0,0,NULL,NULL,NULL,NULL,'Standard',NULL,NULL,0.41,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'2026-12-02 00:12:48','2026-12-02 00:12:48',NULL);
INSERT INTO "scored_listings" VALUES(8,'L40S',7000.0,48,350,0,0,NULL,NULL,NULL,NULL,'Standard',NULL,NULL,0.7,'new',NULL,NULL,NULL,'US','https://m.example/4',NULL,NULL,'2026-12-02 00:12:48','2026-12-02 00:12:48','b-deleted');
INSERT INTO "scored_listings" VALUES(9,'L40S',7001.0,48,350,0,0,NULL,NULL,NULL,NULL,'Standard',NULL,NULL,0.7,'new',NULL,NULL,NULL,'US','https://m.example/5',NULL,NULL,'2026-12-02 00:12:48','2026-12-02 00:12:48','b-deleted');
CREATE INDEX idx_models_model ON models(model);
CREATE INDEX idx_listings_canonical_model ON listings(canonical_model);
CREATE INDEX idx_listings_import_id ON listings(import_id);
CREATE INDEX idx_scored_listings_canonical_model ON scored_listings(canonical_model);
CREATE INDEX idx_scored_listings_score ON scored_listings(score);
CREATE INDEX idx_scored_listings_region ON scored_listings(region);
CREATE INDEX idx_scored_listings_seen_at ON scored_listings(seen_at);
CREATE INDEX idx_scored_listings_import_id ON scored_listings(import_id);
CREATE INDEX idx_quantized_listings_scored_listing_id ON quantized_listings(scored_listing_id);
CREATE TRIGGER update_models_timestamp AFTER UPDATE ON models FOR EACH ROW
BEGIN UPDATE models SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id; END;
CREATE TRIGGER update_listings_timestamp AFTER UPDATE ON listings FOR EACH ROW
BEGIN UPDATE listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id; END;
CREATE TRIGGER update_scored_listings_timestamp AFTER UPDATE ON scored_listings FOR EACH ROW
BEGIN UPDATE scored_listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id; END;
CREATE TRIGGER update_quantized_listings_timestamp AFTER UPDATE ON quantized_listings FOR EACH ROW
BEGIN UPDATE quantized_listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id; END;
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('schema_version',1);
INSERT INTO "sqlite_sequence" VALUES('import_batches',3);
INSERT INTO "sqlite_sequence" VALUES('models',5);
INSERT INTO "sqlite_sequence" VALUES('scored_listings',10);
INSERT INTO "sqlite_sequence" VALUES('listings',2);
INSERT INTO "sqlite_sequence" VALUES('quantized_listings',3);
COMMIT;
