"""JSON API views: import, listings and import batches."""

ROUTES = []
