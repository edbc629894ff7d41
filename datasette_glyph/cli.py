"""Command line: ``datasette glyph-*`` commands. Each parses its options, calls the engine, prints."""

from __future__ import annotations

import contextlib
import datetime
import errno
import getpass
import io
import json
import os
import sqlite3
import sys
from pathlib import Path

import click

from .engine import deltas, file_upkeep, files, importer, lineage, migrator, sample
from .engine.sqlite import StorageError, connect, open_read_only, unwritable
from .formats import diff_body, diff_next_path, plural, score, signed, utc_z, with_utc_z


def register(cli: click.Group) -> None:
    """Attach every glyph command to Datasette's command group."""
    for command in COMMANDS:
        cli.add_command(command)


def _version_label(version, rows=None) -> str:
    """``0002_import_lineage`` for a known version, ``0 (no migration applied)`` for none."""
    for row in rows or []:
        if row.id == version and row.migration is not None:
            return row.migration.label
    return migrator.describe_version(version)


def _missing_folder(path):
    """The folder that should hold the database file at ``path``, when it is missing (or not a folder); else None."""
    folder = os.path.dirname(path)
    if not folder or os.path.isdir(folder):
        return None
    return f"its folder {folder} {'is not a folder' if os.path.exists(folder) else 'does not exist'}"


def _does_not_exist(path, then="") -> click.ClickException:
    """The error for a database file that is not there, naming its folder when that is missing too."""
    folder = _missing_folder(path)
    if folder:
        return click.ClickException(f"{path} does not exist: {folder}")
    return click.ClickException(f"{path} does not exist{then}")


def _open_for_reading(path):
    """A connection that only reads the file as it is: no WAL switch, no bookkeeping table, nothing created.

    Not opened read-only: a read-only connection to a WAL database leaves -wal and -shm files behind.
    """
    if not os.path.exists(path):
        raise _does_not_exist(path)
    return connect(path, wal=False)


@click.command(name="glyph-migrate")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--status", "show_status", is_flag=True, help="List migrations as applied or pending; change nothing.")
@click.option("--to", "target", metavar="ID", help="Migrate forward or back to this migration (0 for none).")
@click.option("--rollback", type=click.IntRange(min=1), metavar="N", help="Roll back the last N applied migrator.")
@click.option("--dry-run", is_flag=True, help="Print the SQL that would run, and change nothing.")
@click.option(
    "--discard-kept",
    is_flag=True,
    help="Drop what going down kept aside (titles, batch details, summaries) instead of restoring it on the next up.",
)
def glyph_migrate(path, show_status, target, rollback, dry_run, discard_kept):
    """Apply datasette-glyph's schema migrations to the database at PATH (created if missing).

    With no options every pending migration is applied, each in its own transaction. A database made
    by the old store (inherited tables, no glyph_migrations table) counts as being at 0001.

    \b
    Examples:
        datasette glyph-migrate glyph.db              # apply all pending
        datasette glyph-migrate glyph.db --status
        datasette glyph-migrate glyph.db --to 0001    # back to the schema before lineage
        datasette glyph-migrate glyph.db --rollback 1
        datasette glyph-migrate glyph.db --dry-run > pending.sql
        datasette glyph-migrate glyph.db --discard-kept
    """
    if target is not None and rollback is not None:
        raise click.UsageError("Use either --to or --rollback, not both.")
    if show_status and (target is not None or rollback is not None or dry_run or discard_kept):
        raise click.UsageError("--status only reports; use it without --to, --rollback, --dry-run or --discard-kept.")
    if discard_kept and dry_run:
        raise click.UsageError("--discard-kept changes the database; it cannot be a dry run.")
    conn = None
    try:
        if discard_kept:
            conn = _open_for_reading(path)
            dropped = migrator.discard_kept(conn)
            if not dropped:
                click.echo(f"{path}: nothing was kept aside")
            for name, count in dropped:
                click.echo(f"Dropped {name} ({plural(count, 'row')})")
            if target is None and rollback is None:
                return
            conn.close()
            conn = None
        if show_status or dry_run:
            conn = _open_for_reading(path)
            if show_status:
                _print_status(conn, path)
            else:
                _print_plan(conn, path, target, rollback)
            return
        folder = _missing_folder(path)
        if folder:
            raise click.ClickException(f"Cannot create {path}: {folder}; nothing was changed")
        conn = connect(path)
        if migrator.is_legacy(conn):
            click.echo(f"{path} was made by the old store: taking it as 0001_inherited_schema")

        def report(step, seconds):
            verb = "Applied" if step.direction == "up" else "Rolled back"
            click.echo(f"{verb} {step.migration.label} ({seconds:.2f}s)")

        steps = migrator.migrate(conn, target=target, rollback=rollback, on_step=report)
        rows = migrator.status(conn)
        version = _version_label(migrator.current_version(conn), rows)
        click.echo(f"{path} is at {version}" + ("" if steps else "; nothing to do"))
        _hint_missing_deltas(path, deltas.missing(conn))
    except migrator.MigrationError as e:
        raise click.ClickException(str(e)) from None
    except sqlite3.Error as e:
        raise click.ClickException(f"{path}: {e}") from None
    finally:
        if conn is not None:
            conn.close()


def _waiting(missing) -> str:
    return f"{plural(len(missing), 'import')} {'has' if len(missing) == 1 else 'have'} no kept deltas"


def _hint_missing_deltas(path, missing) -> None:
    if missing:
        click.echo(
            f"{_waiting(missing)} (made before 0006_import_deltas); their diffs are computed from rows. "
            f"To keep them: datasette glyph-deltas {path}"
        )


def _print_status(conn, path) -> None:
    rows = migrator.status(conn)
    version = migrator.current_version(conn)
    pending = sum(1 for row in rows if not row.applied)
    state = f"at {_version_label(version, rows)}"
    if migrator.is_legacy(conn):
        state += " (made by the old store; glyph-migrate adopts it)"
    elif migrator.is_adopted(conn) and version == "0001":
        state += " (the old store's schema; adopted before)"
    click.echo(f"{path}: {state}, " + (f"{pending} pending" if pending else "up to date"))
    click.echo("")
    width = max(len(row.migration.label if row.migration else row.id) for row in rows) if rows else 0
    for row in rows:
        name = row.migration.label if row.migration else row.id
        if row.migration is None:
            state = "unknown"
        else:
            state = "changed" if row.drifted else ("applied" if row.applied else "pending")
        click.echo(f"  {name:<{width}}  {state:<7}  {utc_z(row.applied_at) or ''}".rstrip())
        if row.migration is None:
            click.echo("      applied to this database, but not one of this version's migrations")
        else:
            click.echo(f"      {row.migration.description}")
        if row.drifted:
            click.echo("      ! the up script has changed since it was applied (checksum drift)")
    for line in migrator.pending_reports(conn, rows):
        click.echo(line)
    broken = migrator.broken_keys_at_adoption(conn)
    if broken:
        click.echo("")
        click.echo(
            f"{plural(broken, 'foreign key')} {'was' if broken == 1 else 'were'} already broken in the old store's "
            "file when it was adopted; "
            "they are kept as they were and never block a migration."
        )
    missing = deltas.missing(conn)
    if missing:
        click.echo("")
        _hint_missing_deltas(path, missing)
    kept = migrator.kept_aside(conn)
    if kept:
        click.echo("")
        click.echo("Kept aside by going down, put back by the next up (drop with --discard-kept):")
        for line in _wrapped([f"{name} ({plural(count, 'row')})" for name, count in kept]):
            click.echo("  " + line)


def _wrapped(items, width=110) -> list:
    lines, current = [], ""
    for item in items:
        if current and len(current) + len(item) + 2 > width:
            lines.append(current + ",")
            current = item
        else:
            current = f"{current}, {item}" if current else item
    return lines + ([current] if current else [])


def _print_plan(conn, path, target, rollback) -> None:
    rows = migrator.status(conn)
    steps = migrator.plan(conn, target=target, rollback=rollback)
    version = _version_label(migrator.current_version(conn), rows)
    if not steps:
        click.echo(f"-- Dry run for {path}: at {version}, nothing to do.")
        return
    applied = [row.id for row in rows if row.applied]
    for step in steps:
        if step.direction == "up":
            applied.append(step.migration.id)
        else:
            applied.remove(step.migration.id)
    after = _version_label(applied[-1] if applied else None, rows)
    click.echo(f"-- Dry run for {path}: {plural(len(steps), 'step')} from {version} to {after}. Nothing was changed.")
    click.echo("-- glyph-migrate runs each step in its own transaction, with PRAGMA foreign_keys = OFF and")
    click.echo("-- PRAGMA legacy_alter_table = ON, and records it in glyph_migrations. The statements below are")
    click.echo("-- those each step ran on a scratch copy of this file.")
    for line in migrator.pending_reports(conn, rows):
        click.echo(("-- " + line) if line else "--")
    for number, (step, statements) in enumerate(migrator.dry_run(conn, target=target, rollback=rollback), start=1):
        click.echo("")
        click.echo(f"-- Step {number} of {len(steps)}: {step.migration.label} ({step.direction})")
        for statement in statements:
            click.echo(statement.rstrip(";") + ";")


@click.command(name="glyph-import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("file_paths", nargs=-1, required=True, metavar="FILE...", type=click.Path(allow_dash=True))
@click.option("--source", "source_name", metavar="NAME", help="Where the files came from (marketplace, broker...).")
@click.option("--description", metavar="TEXT", help="A note recorded with each import.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file instead of a line of text.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
@click.option(
    "--keep-path", is_flag=True, help="Record each file's path as given, not only its name (which may reveal folders)."
)
@click.option(
    "--files-db",
    metavar="FILE",
    help="The files database of kept originals, recorded by PATH for later commands.  [default: PATH-files.db]",
)
@click.option("--no-keep-file", is_flag=True, help="Do not keep a compressed copy of each file with its batch.")
def glyph_import(path, file_paths, source_name, description, as_json, quiet, keep_path, files_db, no_keep_file):
    """Import scored listing CSV FILES into the glyph database at PATH, each file as its own batch.

    Every file gets a new import_id; its rows are numbered import_index 1..n in file order. A file with
    any invalid row is not imported at all, and each problem is reported with its line, column and
    value. The other files are still imported (a file that cannot be read fails alone too); the exit
    status is 1 if any file failed. Use - to read a file from standard input. The batch records each
    file's name without its folder, unless --keep-path is given. Each file's bytes are kept, compressed,
    in the files database PATH-files.db (or --files-db, which PATH then remembers) for download and
    re-import, unless --no-keep-file is given. The database must have been migrated with datasette
    glyph-migrate.

    \b
    Examples:
        datasette glyph-import glyph.db sample/scored_sample.csv
        datasette glyph-import glyph.db *.csv --source broker-x --description "nightly run"
        datasette glyph-import glyph.db listings.csv --json | jq .import_id
    """
    conn = _open_migrated(path)
    store = None if no_keep_file else _store(conn, path, files_db)
    failed = 0
    try:
        for file in file_paths:
            name = None if file == "-" else file
            shown = name or "standard input"
            try:
                if name is not None and os.path.isdir(name):
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
                with _import_progress(file, show=not quiet) as progress:
                    source = sys.stdin.buffer if name is None else file
                    result = importer.import_csv(
                        conn,
                        source,
                        filename=name if name is None or keep_path else os.path.basename(name),
                        source_name=source_name,
                        description=description,
                        progress=progress,
                        original=files.Original(store, files.CSV_TYPE) if store is not None else None,
                    )
            except importer.ImportFailed as e:
                failed += 1
                _report_failure(shown, e, as_json)
                continue
            except OSError as e:
                failed += 1
                unreadable = importer.ImportFailed([_plain_error(f"Cannot read the file: {e.strerror}")])
                _report_failure(shown, unreadable, as_json)
                continue
            except sqlite3.Error as e:  # a full disk, a lock held too long (StorageError): this file only
                failed += 1
                _report_failure(shown, importer.ImportFailed([_plain_error(_storage_message(e, path))]), as_json)
                continue
            except files.FileStoreError as e:  # the files database is another store's
                failed += 1
                _report_failure(shown, importer.ImportFailed([_plain_error(e.message)]), as_json)
                continue
            if as_json:
                click.echo(json.dumps(result.to_dict()))
            elif not quiet:
                click.echo(_import_line(result, shown))
    finally:
        conn.close()
    if failed:
        sys.exit(1)


def _open_migrated(path):
    """A connection to an existing database at the newest schema, or a ClickException saying what to run."""
    if not os.path.exists(path):
        raise _does_not_exist(path, f"; create it with: datasette glyph-migrate {path}")
    try:
        conn = connect(path)
        pending = migrator.plan(conn)
        version = migrator.current_version(conn)
    except migrator.MigrationError as e:
        raise click.ClickException(f"{path} cannot be imported into: {e}") from None
    except sqlite3.DatabaseError as e:
        if unwritable(path):
            raise click.ClickException(f"{path} is {READ_ONLY}; nothing was imported") from None
        if getattr(e, "sqlite_errorcode", 26) & 0xFF == 26:  # SQLITE_NOTADB
            raise click.ClickException(f"{path} is not a SQLite database ({e})") from None
        raise click.ClickException(f"{path} cannot be opened: {e}") from None
    if pending:
        conn.close()
        state = "has no glyph schema" if version is None else f"is at migration {version}"
        raise click.ClickException(
            f"{path} {state}, and {plural(len(pending), 'migration')} {'is' if len(pending) == 1 else 'are'} "
            f"pending; run datasette glyph-migrate {path} first"
        )
    return conn


@contextlib.contextmanager
def _import_progress(file, show):
    """A progress callback drawing a bar of bytes read on stderr, when stderr is a terminal."""
    if not show or file == "-" or not stderr_is_terminal():
        yield None
        return
    with click.progressbar(length=os.path.getsize(file), label=file, file=sys.stderr) as bar:
        yield lambda done: bar.update(done - bar.pos)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def _plain_error(message):
    return {"line": None, "column": None, "value": None, "message": message}


def _import_line(result, shown) -> str:
    line = f"Imported {plural(result.record_count, 'row')} from {shown} as {result.import_id}"
    if result.ignored_columns:
        line += "; ignored columns: " + ", ".join(result.ignored_columns)
    if result.same_content_as:
        line += f"; same content as {result.same_content_as}"
    return line


def _report_failure(shown, failure, as_json) -> None:
    if as_json:
        click.echo(json.dumps({"ok": False, "filename": shown, "errors": failure.errors, "more": failure.more}))
        return
    total = len(failure.errors) + failure.more
    click.echo(f"Error: {shown} was not imported ({plural(total, 'error')}); nothing was written:", err=True)
    for error in failure.errors:
        click.echo(f"  {shown}: {error['message']}", err=True)
    if failure.more:
        click.echo(f"  ... and {failure.more} more", err=True)


# Lineage: diff two imports, roll one back -----------------------------------------------------------------------


READ_ONLY = "read-only (the file or its folder cannot be written)"


def _storage_message(error, path) -> str:
    return str(error) if isinstance(error, StorageError) else f"{path}: {error}; nothing was written"


def _open_existing(path, write=True):
    """A connection to an existing database file; never creates one. Reading a file on a read-only filesystem
    opens it immutable (nothing can change it there), since SQLite cannot make its lock files beside it."""
    if not os.path.exists(path):
        raise _does_not_exist(path)
    if unwritable(path):
        if write:
            raise click.ClickException(f"{path} is {READ_ONLY}; nothing was changed")
        return open_read_only(path, immutable=True)
    try:
        return connect(path)
    except sqlite3.Error as e:
        raise click.ClickException(f"{path} cannot be opened: {e}") from None


def _text_table(headers, rows, right) -> list:
    """Lines of a plain text table; columns whose index is in ``right`` are right-aligned."""
    widths = [max(len(str(v)) for v in column) for column in zip(headers, *rows)]

    def line(values):
        cells = [str(v).rjust(w) if i in right else str(v).ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "  ".join(cells).rstrip()

    return [line(headers), line(["-" * w for w in widths])] + [line(row) for row in rows]


def _money(value) -> str:
    return "" if value is None else f"{value:,.2f}"


def _side(value, name):
    return None if value is None else value[name]


def _diff_lines(diff) -> list:
    data = diff.to_dict()
    lines = []
    for side, batch in (("A", data["a"]), ("B", data["b"])):
        lines.append(f"{side}: {_batch_line(batch)}")
    if not data["same_source"]:
        lines.append("A and B come from different sources.")
    lines += [f"Note: {note}" for note in data["notes"]]
    lines += ["", "By model"]
    model_rows = [
        [
            m["canonical_model"],
            "" if m["a"] is None else f"{m['a']['row_count']:,}",
            "" if m["b"] is None else f"{m['b']['row_count']:,}",
            signed(m["change"]["row_count"], "{:,}"),
            _money(_side(m["a"], "median_price")),
            _money(_side(m["b"], "median_price")),
            signed(m["change"]["median_price"]),
            score(_side(m["a"], "mean_score")),
            score(_side(m["b"], "mean_score")),
            signed(m["change"]["mean_score"], "{:.4f}"),
        ]
        for m in data["models"]
    ]
    headers = ["model", "rows A", "rows B", "rows +/-", "median A", "median B", "median +/-"]
    headers += ["score A", "score B", "score +/-"]
    lines += _text_table(headers, model_rows, right=set(range(1, 10))) if model_rows else ["(no rows in A or B)"]
    counts = data["listings"]
    lines += [
        "",
        (
            f"By listing (matched by source_url): {counts['changed']:,} changed, {counts['added']:,} added, "
            f"{counts['removed']:,} removed, {counts['unchanged']:,} unchanged"
        ),
        (
            f"Rows without source_url (not matched): {counts['without_source_url']['a']:,} in A, "
            f"{counts['without_source_url']['b']:,} in B"
        ),
    ]
    duplicates = counts["duplicate_source_urls"]
    if duplicates["a"] or duplicates["b"]:
        lines.append(
            f"Rows repeating a source_url (the last one counts): {duplicates['a']:,} in A, {duplicates['b']:,} in B"
        )
    if data["changes"]:
        change_rows = [
            [
                c["kind"],
                c["source_url"],
                c["canonical_model"],
                _money(c["old_price"]),
                _money(c["new_price"]),
                signed(c["delta"]),
                "" if c["percent"] is None else signed(c["percent"]) + "%",
            ]
            for c in data["changes"]
        ]
        lines.append("")
        headers = ["change", "source_url", "model", "old price", "new price", "price +/-", "percent"]
        lines += _text_table(headers, change_rows, right={3, 4, 5, 6})
    what = f"{data['kind']} listings" if data["kind"] else "changes"
    if data["total"] and data["changes"]:
        shown = f"Showing {data['offset'] + 1:,}-{data['offset'] + len(data['changes']):,} of {data['total']:,} {what}"
        if data["next_offset"] is not None:
            shown += f"; for more use --offset {data['next_offset']} or --limit 0"
        lines += ["", shown + "."]
    elif data["total"]:
        lines += ["", f"No {what} past offset {data['offset']:,} (there are {data['total']:,})."]
    else:
        lines += ["", f"No {what}."]
    return lines


def _resolve(conn, path, text):
    """The whole import id that ``text`` names in the database at ``path``, or a ClickException saying why not."""
    try:
        return lineage.resolve_import_id(conn, text)
    except lineage.UnknownImport as e:
        raise click.ClickException(e.where(path)) from None
    except lineage.AmbiguousImport as e:
        raise click.ClickException(f"{e} (in {path})") from None


def _batch_line(batch) -> str:
    name = batch["filename"] or batch["description"] or "-"
    return (
        f"{batch['import_id']}  {name}  source {batch['source'] or '-'}  imported {utc_z(batch['imported_at'])}"
        f"  {plural(batch['record_count'] or 0, 'row')}  {batch['status']}"
    )


@click.command(name="glyph-diff")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("a")
@click.argument("b")
@click.option("--kind", type=click.Choice(lineage.CHANGE_KINDS), help="List only changed, added or removed listings.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=lineage.DIFF_PAGE_SIZE,
    show_default=True,
    help="Listing changes to show; 0 for all.",
)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many listing changes.")
@click.option("--json", "as_json", is_flag=True, help="Print the diff as JSON, as GET /api/imports/A/diff/B does.")
def glyph_diff(path, a, b, kind, limit, offset, as_json):
    """Compare import A (before) with import B (after) in the database at PATH.

    A and B are import ids, or unique prefixes of at least 8 characters (datasette glyph-imports
    lists them). Per model: row count, median price and mean score in each, and the change. Per
    listing, matched by source_url: changed price, added (in B only), removed (in A only), unchanged.
    When an import has a source_url more than once, its last row counts; rows without a source_url
    are counted, not matched. The diff says when a side was rolled back or both have the same content.

    \b
    Examples:
        datasette glyph-diff glyph.db 5b0c7a8e 9e1ad0c4
        datasette glyph-diff glyph.db 5b0c7a8e 9e1ad0c4 --kind changed --limit 0
        datasette glyph-diff glyph.db 5b0c7a8e 9e1ad0c4 --json > diff.json
    """
    conn = _open_existing(path, write=False)
    try:
        a, b = _resolve(conn, path, a), _resolve(conn, path, b)
        diff = lineage.diff_imports(conn, a, b, kind=kind, limit=limit or None, offset=offset)
    except sqlite3.DatabaseError as e:
        raise click.ClickException(f"{path} cannot be read as a glyph database: {e}") from None
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(diff_body(diff, diff_next_path(diff, a, b)), indent=2))
    else:
        click.echo("\n".join(_diff_lines(diff)))


def _os_user():
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # no user name in the environment or the password database
        return None


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


@click.command(name="glyph-deltas")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Count the imports that have no kept deltas; change nothing.")
def glyph_deltas(path, dry_run):
    """Keep the deltas of the imports in the database at PATH that have none.

    Each import keeps, in its own transaction, what changed since the previous complete import from its
    source (import_deltas, import_delta_models). Imports made before migration 0006 keep nothing: their
    diffs are computed from both imports' rows, with the same answer, more slowly. This command compares
    each of them with its previous import and keeps the result, oldest first, one import per transaction:
    it can run while Datasette serves the file, and can be stopped and run again.

    \b
    Examples:
        datasette glyph-deltas glyph.db --dry-run
        datasette glyph-deltas glyph.db
    """
    conn = _open_existing(path, write=not dry_run)
    try:
        if not deltas.has_tables(conn):
            version = migrator.describe_version(migrator.current_version(conn))
            raise click.ClickException(
                f"{path} is at {version} and keeps no deltas; run datasette glyph-migrate {path} first"
            )
        waiting = deltas.missing(conn)
        if dry_run or not waiting:
            click.echo(_waiting(waiting))
            return

        done = []

        def report(import_id, previous):
            done.append(import_id)
            click.echo(f"Kept the deltas of {import_id} (after {previous})")

        try:
            deltas.keep_missing(conn, on_import=report)
        except sqlite3.Error as e:
            raise click.ClickException(
                f"{path}: {e}; the deltas of {plural(len(done), 'import')} were kept before it, the others were not "
                "changed (run the command again to go on)"
            ) from None
        click.echo(f"Kept the deltas of {plural(len(done), 'import')}")
    except migrator.NotManaged as e:
        raise click.ClickException(str(e)) from None
    except sqlite3.Error as e:
        raise click.ClickException(_storage_message(e, path)) from None
    finally:
        conn.close()


@click.command(name="glyph-rollback")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("import_id")
@click.option("--actor", help="Who is rolling back, for the record.  [default: your user name]")
@click.option(
    "--yes",
    "-y",
    "assume_yes",
    is_flag=True,
    help="Roll back without asking; needed when standard input is not a terminal.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be removed, and change nothing.")
def glyph_rollback(path, import_id, actor, assume_yes, dry_run):
    """Roll back import IMPORT_ID in the database at PATH: delete every row it wrote, in one transaction.

    IMPORT_ID is the id or a unique prefix of at least 8 characters. Its scored_listings, listings and
    quantized_listings rows go (with quantized rows of its scored listings), and the models rows it
    introduced that no remaining listing names. Its import_batches record stays, marked rolled_back
    with the time and actor. Other imports are not touched. The command first shows what will be
    removed and, on a terminal, asks before doing it; from a script (standard input not a terminal)
    it needs --yes, and without it changes nothing and exits with status 1.

    \b
    Examples:
        datasette glyph-rollback glyph.db 5b0c7a8e --dry-run
        datasette glyph-rollback glyph.db 5b0c7a8e --actor alice --yes
    """
    actor = actor or _os_user()
    conn = _open_existing(path)
    try:
        import_id = _resolve(conn, path, import_id)
        plan = lineage.plan_rollback(conn, import_id)
        verb = "would remove" if dry_run else "removes"
        click.echo(f"Import {_batch_line(plan.batch)}")
        click.echo(
            f"Rolling it back {verb} {plan.scored_listings:,} scored_listings, {plan.listings:,} listings, "
            f"{plan.quantized_listings:,} quantized_listings and {plural(plan.models, 'models row')}"
        )
        if dry_run:
            click.echo("Dry run: nothing was changed")
            return
        if not assume_yes:
            if not _stdin_is_terminal():
                raise click.ClickException(
                    "glyph-rollback asks before removing rows, and standard input is not a terminal: "
                    "add --yes to roll back without asking; nothing was changed"
                )
            if not click.confirm("Roll it back?", default=False):
                click.echo("Nothing was changed")
                sys.exit(1)
        result = lineage.rollback_import(conn, import_id, actor=actor)
    except lineage.AlreadyRolledBack as e:
        by = f" by {e.rolled_back_by}" if e.rolled_back_by else ""
        raise click.ClickException(
            f"Import {e.import_id} was already rolled back at {utc_z(e.rolled_back_at)}{by} in {path}; "
            "nothing was changed"
        ) from None
    except lineage.UnknownImport as e:
        raise click.ClickException(f"{e} in {path}; nothing was changed") from None
    except sqlite3.Error as e:
        raise click.ClickException(f"Rollback of {import_id} in {path} failed: {e}; nothing was changed") from None
    finally:
        conn.close()
    click.echo(
        f"Rolled back {import_id}: removed {result.scored_listings:,} scored_listings, {result.listings:,} listings, "
        f"{result.quantized_listings:,} quantized_listings and {plural(result.models, 'models row')}"
    )
    by = f" by {result.rolled_back_by}" if result.rolled_back_by else ""
    click.echo(f"Its import_batches record stays, marked rolled_back at {utc_z(result.rolled_back_at)}{by}")


@click.command(name="glyph-imports")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--source", "source_name", metavar="NAME", help="Only imports from this source.")
@click.option(
    "--limit", type=click.IntRange(min=0), default=20, show_default=True, help="How many imports to list; 0 for all."
)
@click.option("--json", "as_json", is_flag=True, help="Print the imports as JSON, with every field of each record.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the import ids, one a line.")
def glyph_imports(path, source_name, limit, as_json, quiet):
    """List the imports in the database at PATH, newest first.

    \b
    Examples:
        datasette glyph-imports glyph.db
        datasette glyph-imports glyph.db --source acme-broker --limit 5
        datasette glyph-imports glyph.db --json
        datasette glyph-diff glyph.db $(datasette glyph-imports glyph.db -q --limit 2 | tac)
    """
    conn = _open_existing(path)
    try:
        total = lineage.count_imports(conn, source=source_name)
        imports = lineage.list_imports(conn, limit=limit or max(total, 1), offset=0, source=source_name)
        if as_json:
            imports = files.with_kept_files(conn, imports)
    except sqlite3.DatabaseError as e:
        raise click.ClickException(f"{path} cannot be read as a glyph database: {e}") from None
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(with_utc_z({"ok": True, "imports": imports, "total": total}), indent=2))
        return
    if quiet:
        for batch in imports:
            click.echo(batch["import_id"])
        return
    if not imports:
        click.echo(f"No imports{' from ' + source_name if source_name else ''} in {path}.")
        return
    rows = [
        [
            b["import_id"],
            utc_z(b["imported_at"]) or "",
            b["source"] or "",
            b["filename"] or "",
            f"{b['record_count'] or 0:,}",
            b["status"] or "",
        ]
        for b in imports
    ]
    click.echo("\n".join(_text_table(["import_id", "imported_at", "source", "file", "rows", "status"], rows, {4})))
    if total > len(imports):
        click.echo(f"\nShowing the newest {len(imports):,} of {total:,} imports; for all use --limit 0.")


@click.command(name="glyph-sample")
@click.argument("out", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--rows", type=click.IntRange(min=0), help="Listings in the first snapshot.  [default: 1000]")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same files.")
@click.option(
    "--snapshots",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Write this many snapshots, a day apart.",
)
@click.option(
    "--after",
    type=click.Path(exists=True, dir_okay=False),
    help="Write the snapshot that follows the market in this CSV file, instead of a new sample.",
)
@click.option(
    "--changed",
    type=click.FloatRange(0, 1),
    default=sample.CHANGED,
    show_default=True,
    help="Share of listings whose price changes.",
)
@click.option(
    "--removed",
    type=click.FloatRange(0, 1),
    default=sample.REMOVED,
    show_default=True,
    help="Share of listings removed.",
)
@click.option(
    "--added", type=click.FloatRange(0, 10), default=sample.ADDED, show_default=True, help="New listings, as a share."
)
def glyph_sample(out, rows, seed, snapshots, after, changed, removed, added):
    """Write realistic scored listings CSV files of a made-up GPU market to OUT (- for standard output).

    Every file has all 23 columns. The same options always give the same bytes. With --snapshots N,
    OUT names N files (sample.csv: market-1.csv .. market-N.csv), each the market a day later: the
    given shares of listings change price or are removed, and new listings are added, all with the same
    source_url from file to file, so that glyph-diff shows exactly those changes. With --after FILE,
    the first file written is the day after FILE's sample. What changed is reported on stderr.

    \b
    Examples:
        datasette glyph-sample sample.csv --rows 100000
        datasette glyph-sample day.csv --rows 1000 --snapshots 3
        datasette glyph-sample next.csv --after sample/scored_sample.csv
    """
    if after and rows is not None:
        raise click.UsageError("--rows makes a new market; --after continues the one in a file. Use one of them.")
    if out == "-" and snapshots > 1:
        raise click.UsageError("Several snapshots need a file name to number; - writes only one.")
    if after and os.path.exists(out) and os.path.samefile(after, out):
        raise click.UsageError(f"{out} is the file --after reads; write the next snapshot to another file.")
    if changed + removed > 1:
        raise click.UsageError(
            f"--changed {changed:g} and --removed {removed:g} add up to {changed + removed:g}: a listing either "
            "changes price or is removed, so the two shares can add up to 1 at most."
        )
    if after:
        problem = sample.why_not_continued(after)
        if problem:
            raise click.UsageError(f"--after {after} is not a market to continue: {problem}")
    rates = {"changed": changed, "removed": removed, "added": added}
    stem, extension = os.path.splitext(out)
    names = [out] if snapshots == 1 else [f"{stem}-{n}{extension or '.csv'}" for n in range(1, snapshots + 1)]
    first_day = sample.day_after(sample.iter_csv(after)) if after else sample.FIRST_DAY

    def snapshot(index):
        """The index-th file's listings (streamed, so that any size fits in memory), and its Changes."""
        if after:
            listings, steps = sample.iter_csv(after), range(index + 1)
        else:
            listings, steps = sample.iter_market(1000 if rows is None else rows, seed), range(1, index + 1)
        changes = None
        for step in steps:
            changes = sample.Changes()
            step_seed = seed if after and step == 0 else seed * 1000 + step
            day = first_day + datetime.timedelta(days=step)
            listings = sample.iter_next_snapshot(listings, step_seed, day=day, changes=changes, **rates)
        return listings, changes

    before = after
    for index, name in enumerate(names):
        listings, changes = snapshot(index)
        counter = _Counted(listings)
        if name == "-":
            # The bytes a file would get (\r\n line ends, UTF-8), whatever the terminal's settings.
            sys.stdout.flush()
            stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
            sample.write_csv(counter, stdout)
            stdout.flush()
            stdout.detach()
        else:
            sample.write_csv(counter, name)
        shown = "standard output" if name == "-" else name
        line = f"Wrote {counter.count:,} listings to {shown}"
        if changes is not None:
            line += (
                f"; since {before}: {len(changes.changed):,} changed price, {len(changes.removed):,} removed, "
                f"{len(changes.added):,} added"
            )
        click.echo(line, err=True)
        before = name


class _Counted:
    """An iterable that counts what passes through it."""

    def __init__(self, items):
        self.items, self.count = items, 0

    def __iter__(self):
        for item in self.items:
            self.count += 1
            yield item


# Kept original files: re-import, verify, prune ------------------------------------------------------------------


def _store(conn, path, files_db=None, create=True):
    """The files database of the store at ``path`` (the one it recorded, else ``files_db``, else beside it),
    checked to be its own, or a ClickException."""
    try:
        return files.open_store(conn, path, files_db, create=create)
    except (files.AnotherStore, sqlite3.Error) as e:
        conn.close()
        raise click.ClickException(getattr(e, "message", None) or str(e)) from None


@click.command(name="glyph-reimport")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("import_id")
@click.option("--json", "as_json", is_flag=True, help="Print the import result as JSON.")
def glyph_reimport(path, import_id, as_json):
    """Import the kept original file of import IMPORT_ID again, as a new batch of the database at PATH.

    IMPORT_ID is the id or a unique prefix of at least 8 characters. The new batch gets a new import_id,
    the same file name, source and description, and reimport_of naming IMPORT_ID. A rolled-back import
    is brought back this way.

    \b
    Example:
        datasette glyph-reimport glyph.db 5b0c7a8e
    """
    conn = _open_migrated(path)
    store = _store(conn, path, create=False)
    try:
        import_id = _resolve(conn, path, import_id)
        result = files.reimport(conn, store, import_id, actor=None)  # a web user's name; none on the command line
    except files.NotReimportable as e:
        raise click.ClickException(f"{e} ({path}); nothing was imported") from None
    except importer.ImportFailed as e:
        _report_failure(import_id, e, as_json)
        sys.exit(1)
    except StorageError as e:
        if e.kind == "changed":
            raise click.ClickException(
                f"The kept file of import {import_id} is damaged (its SHA-256 is not the batch's); nothing was "
                f"imported. datasette glyph-files {path} --verify reports every damaged file"
            ) from None
        raise click.ClickException(_storage_message(e, path)) from None
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(dict(result.to_dict(), reimport_of=import_id)))
    else:
        click.echo(_import_line(result, f"the kept file of {import_id}"))


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _age(ctx, param, value):
    if value is None:
        return None
    text = value.strip().lower()
    if text[-1:] in _AGE_UNITS and text[:-1].isdigit():
        return datetime.timedelta(seconds=int(text[:-1]) * _AGE_UNITS[text[-1]])
    raise click.BadParameter(f"{value!r} is not an age such as 30d, 12h, 90m or 2w")


@click.command(name="glyph-files")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--verify", is_flag=True, help="Check every kept file's SHA-256; exit 1 if any is missing or damaged.")
@click.option("--prune", is_flag=True, help="Remove kept files by --older-than and/or --keep-last.")
@click.option(
    "--older-than", callback=_age, metavar="AGE", help="With --prune: only files of imports older than AGE (30d, 12h)."
)
@click.option(
    "--keep-last",
    type=click.IntRange(min=0),
    metavar="N",
    help="With --prune: keep the files of the newest N imports of each source.",
)
@click.option(
    "--keep", "keep_ids", multiple=True, metavar="IMPORT_ID", help="Mark an import's file as never to be pruned."
)
@click.option("--release", "release_ids", multiple=True, metavar="IMPORT_ID", help="Remove that mark.")
@click.option(
    "--delete", "delete_ids", multiple=True, metavar="IMPORT_ID", help="Remove an import's kept file (recorded)."
)
@click.option(
    "--move-from",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Move the .gz files of an older folder of kept files that PATH's imports name into its files database.",
)
def glyph_files(path, verify, prune, older_than, keep_last, keep_ids, release_ids, delete_ids, move_from):
    """Check, prune and mark the kept original files of the database at PATH.

    --verify decompresses every kept file and compares its SHA-256 and size with its batches, and lists
    missing and damaged files (exit status 1 if there is any). --prune removes the files of imports
    older than --older-than and beyond the newest --keep-last of their source (both rules apply when
    both are given), never a file that an import marked with --keep names; the batches stay and record
    when their file was removed. --prune also removes files that no import names (left by an import
    that was killed) once they are an hour old, as the server does when it starts. --delete removes
    one import's file and records who did it and when. The files are in PATH's own files database
    (PATH-files.db, or the one PATH recorded); only files of PATH are ever removed.

    \b
    Examples:
        datasette glyph-files glyph.db --verify
        datasette glyph-files glyph.db --prune --older-than 90d --keep-last 5
        datasette glyph-files glyph.db --keep 5b0c7a8e
        datasette glyph-files glyph.db --delete 5b0c7a8e
    """
    if prune and older_than is None and keep_last is None:
        raise click.UsageError("--prune needs --older-than, --keep-last or both")
    if not prune and (older_than is not None or keep_last is not None):
        raise click.UsageError("--older-than and --keep-last go with --prune")
    if not (verify or prune or keep_ids or release_ids or delete_ids or move_from):
        raise click.UsageError("Say what to do: --verify, --prune, --keep, --release, --delete or --move-from")
    conn = _open_migrated(path)
    store = _store(conn, path, create=bool(move_from))
    problems = []
    try:
        if move_from:
            moved = file_upkeep.move_folder_in(conn, store, Path(move_from))
            click.echo(
                f"Moved {len(moved.moved)} kept file(s) from {move_from} into {store.path}"
                + (f"; left {len(moved.left)} file(s) that no import of {path} names" if moved.left else "")
            )
        for text in delete_ids:
            import_id = _resolve(conn, path, text)
            try:
                deleted = file_upkeep.delete(conn, store, import_id, actor=_os_user())
            except file_upkeep.NotDeletable as e:
                raise click.ClickException(f"{e} ({path}); nothing was deleted") from None
            if deleted.still_named_by:
                others = ", ".join(deleted.still_named_by)
                click.echo(
                    f"Deleted the kept file of {import_id} (recorded as deleted by {_os_user() or 'nobody'} at "
                    f"{deleted.removed_at}); the same bytes stay kept for import(s) {others}"
                )
            else:
                click.echo(
                    f"Deleted the kept file of {import_id}, freeing {deleted.stored_bytes:,} bytes (recorded as "
                    f"deleted by {_os_user() or 'nobody'} at {deleted.removed_at})"
                )
        for ids, mark in ((keep_ids, True), (release_ids, False)):
            for text in ids:
                import_id = _resolve(conn, path, text)
                if not file_upkeep.set_keep(conn, import_id, mark):
                    raise click.ClickException(f"Import {import_id} has no kept file in {path}")
                click.echo(f"{'Marked' if mark else 'Released'} the file of {import_id}" + (" as kept" if mark else ""))
        if prune:
            file_upkeep.sweep(conn, store)
            result = file_upkeep.prune(conn, store, older_than=older_than, keep_last=keep_last)
            imports = len(result.batches)
            click.echo(
                f"Pruned {len(result.removed_files)} file(s) of {imports} import{'s' if imports != 1 else ''}, "
                f"freeing {result.bytes_freed:,} bytes"
            )
        if verify:
            checked, problems = file_upkeep.verify(conn, store)
            for problem in problems:
                click.echo(
                    f"{problem.kind}: {problem.sha256} of import{'s' if len(problem.import_ids) > 1 else ''} "
                    f"{', '.join(problem.import_ids)}: {problem.detail}"
                )
            where = store.path if store is not None else files.files_db_path(conn, path)
            click.echo(f"Verified {checked} kept file(s) in {where}: {len(problems)} missing or damaged")
    except sqlite3.Error as e:
        raise click.ClickException(_storage_message(e, path)) from None
    finally:
        conn.close()
    if problems:
        sys.exit(1)


COMMANDS = [
    glyph_migrate,
    glyph_import,
    glyph_imports,
    glyph_diff,
    glyph_deltas,
    glyph_rollback,
    glyph_sample,
    glyph_reimport,
    glyph_files,
]
