"""datasette-glyph: Datasette hooks, one line each, delegating to the web layer (``web/``) and the CLI."""

from datasette import hookimpl

from . import cli as glyph_cli
from .web import facets, hooks, permissions, routes
from .web import startup as web_startup
from .web.csrf import skip_csrf as _skip_csrf


@hookimpl
def register_commands(cli):
    glyph_cli.register(cli)


@hookimpl
def register_routes():
    return routes.register_routes()


@hookimpl
def startup(datasette):
    return lambda: web_startup.startup(datasette)


@hookimpl
def permission_allowed(datasette, actor, action, resource):  # Datasette 0.65; 1.0a never calls it
    return permissions.permission_allowed(datasette, actor, action)


@hookimpl
def register_actions(datasette):  # Datasette 1.0a; 0.65 never calls it
    return permissions.register_actions()


@hookimpl
def permission_resources_sql(datasette, actor, action):  # Datasette 1.0a; 0.65 never calls it
    return permissions.permission_resources_sql(datasette, actor, action)


@hookimpl
def skip_csrf(datasette, scope):  # Datasette 0.65; 1.0a never calls it
    return _skip_csrf(datasette, scope)


@hookimpl
def menu_links(datasette, actor):
    return lambda: hooks.menu_links(datasette, actor)


@hookimpl
def table_actions(datasette, actor, database, table):
    return lambda: hooks.table_actions(datasette, actor, database, table)


@hookimpl
def render_cell(value, column, table, database, datasette):
    return hooks.render_cell(value, column, table, database, datasette)


@hookimpl
def register_facet_classes():
    return [facets.ImportFacet]


@hookimpl
def prepare_jinja2_environment(env):
    hooks.prepare_jinja2_environment(env)


@hookimpl
def extra_css_urls(datasette):
    return [datasette.urls.static_plugins("datasette_glyph", "glyph.css")]


@hookimpl
def extra_template_vars(datasette, view_name, database, table, request):
    return lambda: hooks.table_template_vars(datasette, view_name, database, table, request)
