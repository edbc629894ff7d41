"""Who may import and roll back: the ``glyph-import`` and ``glyph-rollback`` actions.

Both are denied by default. They are granted to root and to actors matching the plugin configuration's
``allow_import:`` / ``allow_rollback:`` allow blocks, the same way on Datasette 0.65 (``permission_allowed`` hook)
and 1.0a (``register_actions`` + ``permission_resources_sql``). Views ask ``can_import`` / ``can_rollback``.
"""

from __future__ import annotations

from typing import Optional

from datasette.utils import actor_matches_allow
from datasette.utils.asgi import Forbidden

from .settings import plugin_config, read_only

IMPORT = "glyph-import"


ROLLBACK = "glyph-rollback"


# action -> (plugin config key holding its allow block, description)
ACTIONS = {
    IMPORT: ("allow_import", "Import scored listing CSV files into the glyph database"),
    ROLLBACK: ("allow_rollback", "Roll back an import of the glyph database"),
}


def config_allows(datasette, actor, action: str) -> bool:
    """True if the plugin config's allow block for ``action`` matches ``actor``. No block means no one."""
    allow = plugin_config(datasette)[ACTIONS[action][0]]
    if allow is None:
        return False  # actor_matches_allow would read None as "everyone"
    return actor_matches_allow(actor, allow)


def permission_allowed(datasette, actor, action):
    """Datasette 0.65: True for root or a matching allow block; None (no opinion) otherwise."""
    if action not in ACTIONS:
        return None
    if actor and actor.get("id") == "root":
        return True  # 0.65 does not grant root custom actions by itself
    if config_allows(datasette, actor, action):
        return True
    return None


def register_actions():
    """Datasette 1.0a: the two actions, global (they act on the glyph database as a whole)."""
    from datasette.permissions import Action

    return [Action(name=name, description=description) for name, (_, description) in ACTIONS.items()]


def permission_resources_sql(datasette, actor, action):
    """Datasette 1.0a: an allow rule when the allow block matches; never a deny, which would beat every allow.

    Root is granted by Datasette itself when the server runs with ``--root``.
    """
    if action not in ACTIONS or not config_allows(datasette, actor, action):
        return None
    from datasette.permissions import PermissionSQL

    return PermissionSQL.allow(reason=f"datasette-glyph {ACTIONS[action][0]}")


async def _allowed(datasette, actor, action: str) -> bool:
    if hasattr(datasette, "allowed"):  # 1.0a
        return await datasette.allowed(action=action, actor=actor)
    return await datasette.permission_allowed(actor, action, default=False)


async def can_import(datasette, actor) -> bool:
    """May ``actor`` import files?"""
    return await _allowed(datasette, actor, IMPORT)


async def can_rollback(datasette, actor) -> bool:
    """May ``actor`` roll back imports?"""
    return await _allowed(datasette, actor, ROLLBACK)


async def can_view_table(datasette, actor, database: str, table: str) -> bool:
    """May ``actor`` see ``table``? The JSON API shows no more than Datasette's own table view would."""
    if hasattr(datasette, "allowed"):  # 1.0a
        from datasette.resources import TableResource

        visible, _ = await datasette.check_visibility(
            actor, action="view-table", resource=TableResource(database=database, table=table)
        )
        return visible
    visible, _ = await datasette.check_visibility(
        actor, permissions=[("view-table", (database, table)), ("view-database", database), "view-instance"]
    )
    return visible


async def offers_import(datasette, actor) -> bool:
    """Link to the upload page? Only for actors allowed to import, and never on a read-only server."""
    return not read_only(datasette) and await can_import(datasette, actor)


async def can_view_database(datasette, actor, database: str) -> bool:
    """Batch pages show what the import_batches and scored_listings tables show: viewing them needs both."""
    for table in ("import_batches", "scored_listings"):
        if not await can_view_table(datasette, actor, database, table):
            return False
    return True


async def ensure_can_view(datasette, actor, database: str) -> None:
    if not await can_view_database(datasette, actor, database):
        raise Forbidden(f"You do not have permission to view the imports of {database}")


async def cannot_view(datasette, actor, database: str, tables) -> Optional[str]:
    """The first of ``tables`` the actor may not see, or None: lineage shows no more than the tables would."""
    for table in tables:
        if not await can_view_table(datasette, actor, database, table):
            return table
    return None
