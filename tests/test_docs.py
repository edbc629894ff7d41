"""The documentation keeps up with the code: every command and option is in docs/cli.md, the README stays a map,
and every relative link leads to a file (and a heading) that exists."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import click
import pytest
from click.testing import CliRunner
from datasette.cli import cli

REPO = Path(__file__).resolve().parents[1]
CLI_DOC = REPO / "docs" / "cli.md"
README_MAX_LINES = 300
PAGES = [REPO / "README.md", REPO / "CHANGELOG.md"] + sorted((REPO / "docs").glob("*.md"))

GLYPH_COMMANDS = sorted(name for name in cli.commands if name.startswith("glyph-"))


def long_options(command_name: str) -> list:
    """The long flags (``--files-dir``) of a command, read from its ``--help`` as a user sees it."""
    result = CliRunner().invoke(cli, [command_name, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    options = result.output.split("Options:", 1)[1]
    return sorted({flag for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", options)} - {"--help"})


def test_there_are_glyph_commands():
    assert len(GLYPH_COMMANDS) >= 9, GLYPH_COMMANDS


@pytest.mark.parametrize("command_name", GLYPH_COMMANDS)
def test_every_command_and_option_is_in_cli_md(command_name):
    text = CLI_DOC.read_text(encoding="utf-8")
    assert f"\n## {command_name}\n" in text, f"docs/cli.md has no section '## {command_name}'"
    section = text.split(f"\n## {command_name}\n", 1)[1].split("\n## ", 1)[0]
    missing = [option for option in long_options(command_name) if not re.search(rf"`{option}[` ]", section)]
    assert not missing, f"docs/cli.md's {command_name} section does not name {missing}"


def test_the_options_come_from_click_too():
    # The help text and the command's parameters agree, so --help is a fair source for the test above.
    for name in GLYPH_COMMANDS:
        declared = sorted(
            opt
            for param in cli.commands[name].params
            if isinstance(param, click.Option)
            for opt in param.opts + param.secondary_opts
            if opt.startswith("--")
        )
        assert declared == long_options(name), name


def test_the_readme_is_a_map():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"


def anchors(text: str) -> set:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    counts: dict = {}
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        match = re.match(r"#{1,6} (.*)", line)
        if in_code or not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def relative_links(text: str) -> list:
    """(line number, target) of every Markdown link that is not a URL, outside code blocks."""
    links, in_code = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "``", line)):
            if not re.match(r"[a-z]+:", target):
                links.append((number, target))
    return links


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_somewhere(page):
    assert page.exists(), f"{page.name} does not exist"
    broken = []
    for number, target in relative_links(page.read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        destination = (page.parent / unquote(path)).resolve() if path else page
        if not destination.exists():
            broken.append(f"line {number}: {target} (no such file)")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination.read_text(encoding="utf-8")):
            broken.append(f"line {number}: {target} (no heading #{anchor} in {destination.name})")
    assert not broken, f"{page.relative_to(REPO)}:\n" + "\n".join(broken)


@pytest.mark.parametrize(
    "heading, anchor",
    [
        ("## `POST /api/import`", "post-apiimport"),
        ("## `GET /api/imports` and `GET /api/imports/<import_id>`", "get-apiimports-and-get-apiimportsimport_id"),
        ("## When the server cannot answer: 503", "when-the-server-cannot-answer-503"),
        (
            "## Pages and Datasette's views, served as the README says",
            "pages-and-datasettes-views-served-as-the-readme-says",
        ),
        ("## The demo metadata.yml", "the-demo-metadatayml"),
        ("## Read-only servers (replicas)", "read-only-servers-replicas"),
    ],
)
def test_anchors_are_githubs(heading, anchor):
    assert anchors(heading) == {anchor}


def test_every_install_instruction_installs_from_the_clone():
    """datasette-glyph is not on a package index: an install names the clone (``.``), never the package by name."""
    by_name = [
        f"{page.relative_to(REPO)}: {command}"
        for page in PAGES + [REPO / "tests" / "test_replicate.py", REPO / "benchmarks" / "bench_replicate.py"]
        if page.name != "CHANGELOG.md"
        for command in re.findall(r"pip install [^\n`]*", page.read_text(encoding="utf-8"))
        if "datasette-glyph" in command
    ]
    installs = [
        command
        for page in PAGES
        for command in re.findall(r"pip install [^\n`]*", page.read_text(encoding="utf-8"))
        if "replicate" in command
    ]
    assert (by_name, sorted(set(installs))) == ([], ["pip install '.[replicate]'"])
