"""Views that put lineage to use: diffs between imports, listing history, rollback."""

ROUTES = []
