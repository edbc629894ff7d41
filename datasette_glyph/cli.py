"""Command line: ``datasette glyph-*`` commands. Each parses its options, calls the engine, prints."""

from __future__ import annotations

import os

import click

from . import migrate as migrations
from .db import connect


def register(cli: click.Group) -> None:
    """Attach every glyph command to Datasette's command group."""
    for command in COMMANDS:
        cli.add_command(command)


def _version_label(version) -> str:
    return version or "no migrations (empty)"


@click.command(name="glyph-migrate")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--status", "show_status", is_flag=True, help="List migrations as applied or pending; change nothing.")
@click.option("--to", "target", metavar="ID", help="Migrate forward or back to this migration (0 for none).")
@click.option("--rollback", type=click.IntRange(min=1), metavar="N", help="Roll back the last N applied migrations.")
@click.option("--dry-run", is_flag=True, help="Print the SQL that would run, and change nothing.")
def glyph_migrate(path, show_status, target, rollback, dry_run):
    """Apply datasette-glyph's schema migrations to the database at PATH.

    With no options every pending migration is applied, each in its own transaction. A database made
    by the old store (inherited tables, no glyph_migrations table) counts as being at 0001.

    \b
    Examples:
        datasette glyph-migrate glyph.db              # apply all pending
        datasette glyph-migrate glyph.db --status
        datasette glyph-migrate glyph.db --to 0001    # back to the schema before lineage
        datasette glyph-migrate glyph.db --rollback 1
        datasette glyph-migrate glyph.db --dry-run > pending.sql
    """
    if target is not None and rollback is not None:
        raise click.UsageError("Use either --to or --rollback, not both.")
    if not os.path.exists(path) and (show_status or dry_run):
        raise click.ClickException(f"{path} does not exist")
    conn = connect(path)
    try:
        if show_status:
            _print_status(conn, path)
        elif dry_run:
            _print_plan(conn, path, target, rollback)
        else:

            def report(step, seconds):
                click.echo(f"{'Applied' if step.direction == 'up' else 'Rolled back'} {step.migration.label} in {seconds:.2f}s")

            steps = migrations.migrate(conn, target=target, rollback=rollback, on_step=report)
            version = _version_label(migrations.current_version(conn))
            click.echo(f"{path} is at {version}" + ("" if steps else "; nothing to do"))
    except migrations.MigrationError as e:
        raise click.ClickException(str(e))
    finally:
        conn.close()


def _print_status(conn, path) -> None:
    rows = migrations.status(conn)
    click.echo(f"Migrations for {path}:")
    for row in rows:
        if row.migration is None:
            state, description = "unknown", "(applied, but not among this version's migrations)"
        else:
            state = "changed" if row.drifted else ("applied" if row.applied else "pending")
            description = row.migration.label
        click.echo(f"  {row.id}  {state:<8} {description}" + (f"  [{row.applied_at}]" if row.applied else ""))
        if row.migration is not None:
            click.echo(f"        {row.migration.description}")
    pending = sum(1 for row in rows if not row.applied)
    click.echo(f"Version: {_version_label(migrations.current_version(conn))}; {pending} pending")


def _print_plan(conn, path, target, rollback) -> None:
    steps = migrations.plan(conn, target=target, rollback=rollback)
    for step in steps:
        click.echo(f"-- {step.migration.label} ({step.direction})")
        click.echo(step.sql.rstrip("\n"))
        click.echo("")
    click.echo(f"-- Dry run: {len(steps)} migration step(s) for {path}; nothing was changed.")


COMMANDS = [glyph_migrate]
