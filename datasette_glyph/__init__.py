"""datasette-glyph: Datasette hooks. Each delegates to the module that does the work."""

import sys

from datasette import hookimpl

from . import cli as glyph_cli
from . import facets, migrate, pages, permissions, responses, routes, routes_files, routes_lineage, routes_models
from .config import (
    DatabaseNotServed,
    GlyphStartupError,
    glyph_database,
    mark_unwritable,
    plugin_config,
    read_only,
    remove_empty_files,
    run_write,
    unwritable,
)


@hookimpl
def register_commands(cli):
    glyph_cli.register(cli)


@hookimpl
def register_routes():
    # routes_lineage first: its paths are more specific than the batch detail route. Every view is guarded: the
    # JSON API answers 503 JSON, the pages Datasette's 503 page, when the database cannot serve them.
    return [
        (pattern, responses.json_api(view) if pattern.startswith("^/api/") else responses.html_page(view))
        for pattern, view in routes_lineage.ROUTES + routes_files.ROUTES + routes.ROUTES + routes_models.ROUTES + pages.ROUTES
    ]


@hookimpl
def startup(datasette):
    async def inner():
        routes.on_startup(datasette)
        try:
            db = glyph_database(datasette)
        except DatabaseNotServed as e:
            removed = remove_empty_files(datasette)
            raise GlyphStartupError(str(e) + "".join(f"; removed the empty file {path}" for path in removed))
        if not read_only(datasette) and not unwritable(db):
            await routes_files.sweep_at_startup(datasette, db)
        if not plugin_config(datasette)["migrate"]:
            return
        if read_only(datasette):
            print(f"datasette-glyph: {db.name} is read-only; not migrating it", file=sys.stderr)
            return
        problem = unwritable(db)
        if problem:
            # A read-only file or filesystem: say so in one line and serve the database read-only.
            print(
                f"datasette-glyph: cannot write {db.name} ({problem}); serving it read-only, not migrating it",
                file=sys.stderr,
            )
            mark_unwritable(db)
            return
        try:
            steps = await run_write(db, migrate.migrate_if_managed)
        except migrate.MigrationError as e:
            raise GlyphStartupError(f"datasette-glyph could not migrate {db.name}: {e}")
        if steps is None:
            message = f"datasette-glyph: {db.name} is not a glyph database; adopt it with datasette glyph-migrate"
            print(message, file=sys.stderr)
        for step in steps or []:
            print(f"datasette-glyph: applied {step.migration.label} ({step.direction}) to {db.name}", file=sys.stderr)

    return inner


@hookimpl
def permission_allowed(datasette, actor, action, resource):
    # Datasette 0.65; 1.0a never calls it.
    return permissions.permission_allowed(datasette, actor, action)


@hookimpl
def register_actions(datasette):
    # Datasette 1.0a; 0.65 never calls it.
    return permissions.register_actions()


@hookimpl
def permission_resources_sql(datasette, actor, action):
    # Datasette 1.0a; 0.65 never calls it.
    return permissions.permission_resources_sql(datasette, actor, action)


@hookimpl
def skip_csrf(datasette, scope):
    # Datasette 0.65; 1.0a never calls it.
    return routes.skip_csrf(datasette, scope)


@hookimpl
def menu_links(datasette, actor):
    async def inner():
        return await pages.menu_links(datasette, actor)

    return inner


@hookimpl
def table_actions(datasette, actor, database, table):
    async def inner():
        return await pages.table_actions(datasette, actor, database, table)

    return inner


@hookimpl
def render_cell(value, column, table, database, datasette):
    return pages.render_cell(value, column, table, database, datasette)


@hookimpl
def register_facet_classes():
    return [facets.ImportFacet]


@hookimpl
def prepare_jinja2_environment(env):
    pages.prepare_jinja2_environment(env)


@hookimpl
def extra_css_urls(datasette):
    return [datasette.urls.static_plugins("datasette_glyph", "glyph.css")]


@hookimpl
def extra_template_vars(datasette, view_name, database, table, request):
    async def inner():
        return await pages.table_template_vars(datasette, view_name, database, table, request)

    return inner
