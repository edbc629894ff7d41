-- Keep the listing title that scored CSV files carry
ALTER TABLE scored_listings ADD COLUMN title TEXT;
