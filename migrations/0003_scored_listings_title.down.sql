-- Drop scored_listings.title
ALTER TABLE scored_listings DROP COLUMN title;
