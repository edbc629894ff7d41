"""HTML pages under /-/glyph/: upload, batch list, batch detail."""

ROUTES = []
