"""Every example in README.md and in the docs pages that carry examples runs as printed.

Each page's ``bash`` blocks run in document order, in one folder holding what a clone holds (``sample/``,
``tests/``, ``metadata.yml``), with this environment's ``datasette`` first on the PATH; each must exit 0 and show no
curl progress meter, and a block of curl calls must print nothing but JSON. A ``console`` block is a transcript:
each ``$`` command runs and must print exactly the lines that follow it. A docs page's examples follow the README's
quick start, as its reader's do: its serve command runs first, in the same folder.

The examples use ``localhost:8001`` (Datasette's default port). They run in a private network and process
namespace (``unshare``), so that port is theirs alone on a shared machine and every server they start in the
background ends with them. Where namespaces are not allowed, the port is the one thing changed: a free port,
passed to each ``datasette glyph.db ...`` server as ``-p``.

Not run here: the quick start's install-and-test command (``.ci/run`` runs the quick start's two commands in a
fresh clone), and the pages in NOT_RUN_PAGES. The quick start's serve command does run, without its leading
``pip install .``. Without curl the test is skipped, saying so, unless ``$GLYPH_REQUIRE_CURL`` is set (as
``.ci/run`` sets it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from .server import REPO, free_port

PORT = 8001
# Set by .ci/run: there a missing curl fails this test instead of skipping it.
REQUIRE_CURL = "GLYPH_REQUIRE_CURL"
TIMEOUT = 600
NOT_RUN = {
    "pip install -e '.[test]' && python -m pytest": "the test command: .ci/run runs it in a fresh clone",
}
# The pages whose examples run here, each in a fresh folder after the README's quick start.
PAGES = ["README.md", "docs/cli.md", "docs/api.md", "docs/lineage.md", "docs/migrations.md"]
# Pages with shell blocks that do not run here, and why.
NOT_RUN_PAGES = {
    "docs/deploy.md": "tests/test_replicate.py runs its folder setup and replica script; the rest needs /data and S3",
    "docs/reliability.md": "the suites are this test suite and the full-size benchmarks",
    "docs/benchmarks.md": "the full-size benchmarks",
    "docs/contributing.md": "the test, lint and benchmark commands",
}


def not_run(block) -> bool:
    """Whether the block is one of NOT_RUN (a block is named by its first line's command)."""
    first = block.text.strip().splitlines()[0].split("  #")[0].strip()
    return first in NOT_RUN


QUICK_START_INSTALL = "pip install . && "

# Brings the loopback interface of a new network namespace up, as `ip link set lo up` does (SIOCGIFFLAGS and
# SIOCSIFFLAGS with IFF_UP), without needing iproute2.
LOOPBACK_UP = textwrap.dedent("""
    import fcntl, socket, struct
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))
    """)


@dataclass
class Block:
    kind: str  # bash or console
    text: str
    line: int  # where the block starts in its page
    section: str


def readme_blocks(text: str) -> list:
    """The fenced bash and console blocks of a page, in order, with the ``##`` section each is in."""
    blocks, section = [], ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("## "):
            section = lines[i][3:]
        match = re.fullmatch(r"```(bash|console)", lines[i])
        if match:
            end = lines.index("```", i + 1)
            blocks.append(Block(match.group(1), "\n".join(lines[i + 1 : end]) + "\n", i + 1, section))
            i = end
        i += 1
    return blocks


def transcript(block: Block) -> list:
    """(command, expected output) pairs of a console block."""
    pairs = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            pairs.append([line[2:], ""])
        else:
            pairs[-1][1] += line + "\n"
    return [tuple(p) for p in pairs]


def namespaces_work() -> bool:
    """Whether this machine lets an unprivileged process have its own network and process namespace."""
    unshare = shutil.which("unshare")
    if not unshare:
        return False
    probe = LOOPBACK_UP + "socket.socket().bind(('127.0.0.1', %d))\n" % PORT
    try:
        result = subprocess.run(
            [unshare, "-rnpf", sys.executable, "-c", probe], capture_output=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def with_port(text: str, port: int) -> str:
    """The example with ``port`` instead of 8001 (only where namespaces are not available)."""
    text = text.replace(f"localhost:{PORT}", f"localhost:{port}")
    return re.sub(r"(datasette glyph\.db -m metadata\.yml)", rf"\1 -p {port}", text)


def driver_script(blocks: list, work: Path, port: int) -> str:
    """A bash script running each example in turn, each one's output and status in files named by its number."""
    steps = []
    for number, block in enumerate(blocks):
        script = work / f".example-{number}.sh"
        script.write_text(block.text if port == PORT else with_port(block.text, port), encoding="utf-8")
        if block.kind == "serve":
            # Up to a minute for the server to answer; the examples after it need it.
            steps.append(f"(bash {script} > .example-{number}.out 2> .example-{number}.err &)")
            steps.append(
                f"for i in $(seq 300); do curl -s -o /dev/null http://localhost:{port}/-/versions.json && "
                f"echo 0 > .example-{number}.rc && break; sleep 0.2; done"
            )
        else:
            steps.append(
                f"bash -e {script} > .example-{number}.out 2> .example-{number}.err; echo $? > .example-{number}.rc"
            )
    return "cd " + str(work) + "\n" + "\n".join(steps) + "\n"


def run_examples(blocks: list, work: Path, isolated: bool, port: int) -> list:
    """Run ``blocks`` in ``work``; return (status, stdout, stderr) of each."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("DATASETTE_SECRET", None)
    script = driver_script(blocks, work, port)
    if isolated:
        argv = ["unshare", "-rnpf", "bash", "-c", f"{sys.executable} -c '{LOOPBACK_UP}' && {script}"]
    else:
        argv = ["bash", "-c", script]
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        process.wait(TIMEOUT)
    finally:
        # Background servers are in the driver's process group (and, with namespaces, end with it anyway).
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    results = []
    for number in range(len(blocks)):
        rc = work / f".example-{number}.rc"
        status = int(rc.read_text()) if rc.exists() else None
        results.append(
            (
                status,
                (work / f".example-{number}.out").read_text(encoding="utf-8", errors="replace"),
                (work / f".example-{number}.err").read_text(encoding="utf-8", errors="replace"),
            )
        )
    return results


def only_json(text: str) -> bool:
    """Whether ``text`` is nothing but JSON documents separated by white space."""
    decoder, position = json.JSONDecoder(), 0
    text = text.strip()
    while position < len(text):
        try:
            _, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return False
        while position < len(text) and text[position].isspace():
            position += 1
    return True


def planned_examples(text: str, prelude: bool = False):
    """The blocks to run, each as a Block whose kind is bash, serve (runs in the background) or console-step.

    With ``prelude``, the README quick start's serve command runs first (a docs page's examples follow it)."""
    plan = []
    if prelude:
        quick_start = next(b for b in readme_blocks(readme_text()) if b.text.startswith(QUICK_START_INSTALL))
        plan.append((Block("serve", quick_start.text[len(QUICK_START_INSTALL) :], 0, "README quick start"), None))
    for block in readme_blocks(text):
        if block.kind == "console":
            for command, expected in transcript(block):
                plan.append((Block("console", command + " 2>&1\n", block.line, block.section), expected))
            continue
        if not_run(block):
            continue
        if block.text.startswith(QUICK_START_INSTALL):  # the quick start: everything but the install
            plan.append((Block("serve", block.text[len(QUICK_START_INSTALL) :], block.line, block.section), None))
            continue
        plan.append((block, None))
    return plan


def readme_text() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def page_plan(page: str) -> list:
    return planned_examples((REPO / page).read_text(encoding="utf-8"), prelude=page != "README.md")


def test_examples_are_found():
    skipped = [
        b.text.strip().splitlines()[0].split("  #")[0].strip()
        for page in PAGES
        for b in readme_blocks((REPO / page).read_text(encoding="utf-8"))
        if not_run(b)
    ]
    assert sorted(skipped) == sorted(NOT_RUN)
    for page in PAGES:
        own = [block for block, _ in page_plan(page) if block.line]
        assert own, f"{page} has no example to run"
    assert sum(len(page_plan(page)) for page in PAGES) >= 30


def test_every_page_with_shell_examples_is_run_or_said_not_to_be():
    pages = ["README.md"] + sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))
    with_examples = [p for p in pages if readme_blocks((REPO / p).read_text(encoding="utf-8"))]
    assert sorted(set(with_examples) - set(PAGES) - set(NOT_RUN_PAGES)) == []
    assert sorted((set(PAGES) | set(NOT_RUN_PAGES)) - set(pages)) == []  # every page named exists


@pytest.mark.parametrize("page", PAGES)
def test_every_example_runs_as_printed(tmp_path, page):
    if not shutil.which("curl"):
        message = "the examples use curl, which is not installed (apt-get install curl)"
        if os.environ.get(REQUIRE_CURL):
            pytest.fail(f"{message}; {REQUIRE_CURL} is set")
        pytest.skip(message)
    work = tmp_path / "clone"
    work.mkdir()
    shutil.copytree(REPO / "sample", work / "sample")
    shutil.copytree(REPO / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "metadata.yml", work / "metadata.yml")
    plan = page_plan(page)
    isolated = namespaces_work()
    port = PORT if isolated else free_port()
    results = run_examples([block for block, _ in plan], work, isolated, port)
    failures = []
    for (block, expected), (status, out, err) in zip(plan, results):
        where = f"{page} line {block.line} ({block.section}):\n{block.text}"
        if block.kind == "console":
            if not isolated:
                expected = with_port(expected, port)
            if out != expected:
                failures.append(f"{where}printed:\n{out}expected:\n{expected}")
        elif status != 0:
            failures.append(f"{where}exit status {status}\nstdout:\n{out}\nstderr:\n{err}")
        elif "% Total" in out + err:
            failures.append(f"{where}mixes curl's progress meter into its output:\n{out}\nstderr:\n{err}")
        elif block.text.lstrip().startswith("curl") and not only_json(out):
            failures.append(f"{where}printed something other than JSON:\n{out}\nstderr:\n{err}")
    assert not failures, "\n\n".join(failures)


def untracked(work: Path) -> set:
    """Files git would list as new in ``work`` (what .gitignore does not cover), without the harness's own."""
    listed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=work, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return {line[3:] for line in listed if line.startswith("?? ") and not line[3:].startswith(".example-")}


@pytest.mark.parametrize("page", PAGES)
def test_the_examples_leave_nothing_for_git_to_list(tmp_path, page):
    """A reader who runs a page's examples in the clone finds `git status` as clean as before: what they create is
    in .gitignore."""
    if not shutil.which("curl") or not shutil.which("git"):
        message = "the examples use curl and this test git; one is not installed"
        if os.environ.get(REQUIRE_CURL):
            pytest.fail(f"{message}; {REQUIRE_CURL} is set")
        pytest.skip(message)
    work = tmp_path / "clone"
    work.mkdir()
    shutil.copytree(REPO / "sample", work / "sample")
    shutil.copytree(REPO / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "metadata.yml", work / "metadata.yml")
    shutil.copy(REPO / ".gitignore", work / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    before = untracked(work)
    plan = page_plan(page)
    isolated = namespaces_work()
    results = run_examples([block for block, _ in plan], work, isolated, PORT if isolated else free_port())
    assert [status for (block, _), (status, _, _) in zip(plan, results) if block.kind != "console"] == [
        0 for block, _ in plan if block.kind != "console"
    ]
    assert sorted(untracked(work) - before) == []
