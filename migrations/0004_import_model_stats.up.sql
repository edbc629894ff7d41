-- Per-model price summary of every batch, kept by the import, so batch pages and diffs read a few rows
--
-- A batch page or a diff used to compute these from the batch's rows (seconds for a million-row batch).
-- The importer writes them in the same transaction as the rows; rollback removes them with the rows.
-- Existing batches are summarised here from their rows. The median is the mean of the middle one or two
-- prices of the model in the batch.

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

INSERT INTO import_model_stats (import_id, canonical_model, row_count, min_price, median_price, max_price, mean_score)
SELECT import_id, canonical_model, COUNT(*), MIN(price),
    AVG(CASE WHEN position IN ((rows_for_model + 1) / 2, (rows_for_model + 2) / 2) THEN price END),
    MAX(price), AVG(score)
FROM (
    SELECT import_id, canonical_model, price, score,
        ROW_NUMBER() OVER (PARTITION BY import_id, canonical_model ORDER BY price) AS position,
        COUNT(*) OVER (PARTITION BY import_id, canonical_model) AS rows_for_model
    FROM scored_listings
)
GROUP BY import_id, canonical_model;
