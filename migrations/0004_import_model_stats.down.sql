-- Drop the per-model batch summaries (they are derived from scored_listings)
DROP TABLE import_model_stats;
