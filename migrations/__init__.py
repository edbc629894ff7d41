# The SQL files beside this one are the package's schema migrations (datasette_glyph.migrations in the wheel).
