-- Drop the index on scored_listings.condition
DROP INDEX idx_scored_listings_condition;
