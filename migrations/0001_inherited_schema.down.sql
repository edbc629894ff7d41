-- Remove the inherited schema (every table of 0001 and its rows); refused for a database the old store made
DROP TABLE quantized_listings;
DROP TABLE scored_listings;
DROP TABLE listings;
DROP TABLE models;
DROP TABLE schema_version;
DROP TABLE import_batches;
