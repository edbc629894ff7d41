-- Index scored_listings.condition, so its facet on the table page does not scan every row
--
-- metadata.yml facets scored_listings on condition. Without an index the facet read the whole table (about
-- 370 ms at a million rows, past Datasette's facet time limit under load); with it, about 65 ms.
CREATE INDEX idx_scored_listings_condition ON scored_listings(condition);
