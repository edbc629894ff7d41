"""The engine: synchronous functions over a ``sqlite3.Connection``, for every door (the CLI, the web layer, tests).

It uses sqlite3, the standard library, ijson and rapidfuzz, and never imports Datasette or click. These are the
names the rest of the package and its users call; each module below holds the rest of its part.
"""

from .batch import ImportResult
from .errors import ImportFailed
from .file_upkeep import prune, verify
from .files import Original, kept_files, reimport
from .importer import import_csv, import_json, import_records
from .json_source import InvalidJson, scan_json
from .lineage import (
    AlreadyRolledBack,
    ImportDiff,
    UnknownImport,
    diff_imports,
    get_import,
    list_imports,
    listing_history,
    previous_import,
    rollback_import,
)
from .migrator import MigrationError, migrate
from .sqlite import StorageError, connect, open_read_only

__all__ = [
    "AlreadyRolledBack",
    "ImportDiff",
    "ImportFailed",
    "ImportResult",
    "InvalidJson",
    "MigrationError",
    "Original",
    "StorageError",
    "UnknownImport",
    "connect",
    "diff_imports",
    "get_import",
    "import_csv",
    "import_json",
    "import_records",
    "kept_files",
    "list_imports",
    "listing_history",
    "migrate",
    "open_read_only",
    "previous_import",
    "prune",
    "reimport",
    "rollback_import",
    "scan_json",
    "verify",
]
