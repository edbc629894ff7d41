-- Drop the index on scored_listings.price
DROP INDEX idx_scored_listings_price;
