-- Drop the per-model batch summaries, keeping them aside in glyph_kept_0004_import_model_stats for the next up
DROP TABLE IF EXISTS glyph_kept_0004_import_model_stats;
CREATE TABLE glyph_kept_0004_import_model_stats AS SELECT rowid AS row_id, * FROM import_model_stats;
DROP TABLE import_model_stats;
