-- Per-model price summary of every batch, kept by the import, so batch pages and diffs read a few rows
--
-- A batch page or a diff used to compute these from the batch's rows (seconds for a million-row batch).
-- The importer writes them in the same transaction as the rows; rollback removes them with the rows.
-- Summaries that the last down kept aside (glyph_kept_0004_import_model_stats) are put back as they were;
-- every other batch is summarised here from its rows. The median is the mean of the middle one or two
-- prices of the model in the batch.
-- supersedes: e4be0f86575d1137694765cbb47ffc3bef96887c286ab069369846a084e8b326

CREATE TABLE import_model_stats (
    import_id TEXT NOT NULL REFERENCES import_batches(import_id),
    canonical_model TEXT NOT NULL,
    row_count INTEGER NOT NULL, -- scored_listings rows of this model in the batch
    min_price REAL NOT NULL,
    median_price REAL NOT NULL, -- mean of the middle one or two prices
    max_price REAL NOT NULL,
    mean_score REAL NOT NULL,
    PRIMARY KEY (import_id, canonical_model)
);

CREATE TABLE IF NOT EXISTS glyph_kept_0004_import_model_stats (
    row_id, import_id, canonical_model, row_count, min_price, median_price, max_price, mean_score
);
INSERT INTO import_model_stats (rowid, import_id, canonical_model, row_count, min_price, median_price, max_price, mean_score)
SELECT row_id, import_id, canonical_model, row_count, min_price, median_price, max_price, mean_score
FROM glyph_kept_0004_import_model_stats
WHERE import_id IN (SELECT import_id FROM import_batches)
ORDER BY row_id;

INSERT INTO import_model_stats (import_id, canonical_model, row_count, min_price, median_price, max_price, mean_score)
SELECT import_id, canonical_model, COUNT(*), MIN(price),
    AVG(CASE WHEN position IN ((rows_for_model + 1) / 2, (rows_for_model + 2) / 2) THEN price END),
    MAX(price), AVG(score)
FROM (
    SELECT import_id, canonical_model, price, score,
        ROW_NUMBER() OVER (PARTITION BY import_id, canonical_model ORDER BY price) AS position,
        COUNT(*) OVER (PARTITION BY import_id, canonical_model) AS rows_for_model
    FROM scored_listings
    WHERE import_id NOT IN (SELECT import_id FROM glyph_kept_0004_import_model_stats)
)
GROUP BY import_id, canonical_model;

DROP TABLE glyph_kept_0004_import_model_stats;
