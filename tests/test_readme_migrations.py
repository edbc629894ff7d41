"""The worked migration example of docs/migrations.md, run as printed, prints what the page says it prints."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from datasette_glyph.engine import migrator

ROOT = Path(__file__).resolve().parents[1]


def readme_example():
    text = (ROOT / "docs" / "migrations.md").read_text(encoding="utf-8")
    section = text[text.index("A worked example") :]
    commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    printed = re.search(r"ends with what is waiting to be put back:\n\n```\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in commands.strip().splitlines()], printed


def test_the_worked_migration_example_runs_as_printed(tmp_path):
    commands, printed = readme_example()
    shutil.copytree(ROOT / "sample", tmp_path / "sample")
    shutil.copytree(ROOT / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    outputs = []
    for command in commands:
        result = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert result.returncode == 0, (command, result.stderr)
        outputs.append(result.stdout)
    status_after_down = outputs[5]
    assert status_after_down.endswith(printed)
    labels = [m.label for m in migrator.load_migrations()]
    assert outputs[1].splitlines()[0] == (
        f"old.db: at 0001_inherited_schema (made by the old store; glyph-migrate adopts it), {len(labels) - 1} pending"
    )
    # The adopted file's imports keep no deltas until glyph-deltas compares them, and glyph-migrate says so.
    hint = (
        "1 import has no kept deltas (made before 0006_import_deltas); their diffs are computed from rows. "
        "To keep them: datasette glyph-deltas old.db"
    )
    assert outputs[2].splitlines()[-2:] == [f"old.db is at {labels[-1]}", hint]
    assert outputs[-1].splitlines()[-2:] == [f"old.db is at {labels[-1]}", hint]
