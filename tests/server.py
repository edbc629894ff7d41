"""Run a real ``datasette`` server process for tests and benchmarks, and talk to it over HTTP.

The in-process test client cannot be killed half way through an import, does not stream uploads the way
a browser or curl does, and shares its event loop with the test. The suites that prove crash safety,
behaviour under load and the served speed need the real thing:

    with running_server(db_path, plugin_config={"allow_import": True}) as server:
        status, body = server.upload_csv(csv_path)
        server.kill()  # SIGKILL, like a power cut
        server = server.restart()

Only the standard library is used, so a benchmark can import this module from any environment where the
package is installed. ``datasette`` is the one installed next to the running Python interpreter.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

PathLike = Union[str, Path]


def datasette_command() -> str:
    """The ``datasette`` script of the environment running this interpreter."""
    candidate = Path(sys.executable).parent / "datasette"
    return str(candidate) if candidate.exists() else "datasette"


def make_scored_csv(path: PathLike, rows: int, seed: int = 1) -> Path:
    """Write a realistic scored listings CSV of ``rows`` rows (``datasette_glyph.engine.sample``; same seed, same
    bytes)."""
    from datasette_glyph.engine.sample import write_market

    return write_market(path, rows, seed)


REPO = Path(__file__).resolve().parents[1]


def readme_serve_options() -> list:
    """The options of the README quick start's ``datasette glyph.db ...`` command, with file paths made absolute.

    Benchmarks and load tests serve exactly what the README tells people to run.
    """
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```bash\n(.*?)\n```", section, re.S):
        for command in block.split("&&"):
            words = shlex.split(command.strip(), comments=True)
            if words[:2] == ["datasette", "glyph.db"]:
                return [str(REPO / w) if w.endswith((".yml", ".yaml", ".json")) else w for w in words[2:]]
    raise LookupError("The README's quick start has no `datasette glyph.db ...` command")


def readme_settings() -> Dict[str, str]:
    """The ``--setting NAME VALUE`` pairs of the README's serve command."""
    options = readme_serve_options()
    return {options[i + 1]: options[i + 2] for i, w in enumerate(options) if w == "--setting"}


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it, so parallel runs do not collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: Dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


@dataclass
class Server:
    """A running ``datasette`` process serving ``db_path`` on ``port``."""

    db_path: Path
    port: int
    process: subprocess.Popen
    argv: Sequence[str]
    log_path: Path
    env: Dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    # HTTP -------------------------------------------------------------------------------------------

    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Optional[Union[bytes, Iterable[bytes]]] = None,
        headers: Optional[Dict[str, str]] = None,
        timeout: float = 60,
    ) -> Response:
        """Send one request and read the whole answer. ``body`` may be bytes or an iterable of chunks
        (sent as they come, so a caller can pause or stop part way; give Content-Length yourself)."""
        conn = self.connection(timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            headers = dict(headers or {})
            if isinstance(body, (bytes, bytearray)):
                headers.setdefault("Content-Length", str(len(body)))
            elif body is None and method in ("POST", "PUT", "DELETE", "PATCH"):
                headers.setdefault("Content-Length", "0")
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            if isinstance(body, (bytes, bytearray)):
                conn.send(bytes(body))
            elif body is not None:
                for chunk in body:
                    conn.send(chunk)
            answer = conn.getresponse()
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
        finally:
            conn.close()

    def get(self, path: str, headers: Optional[Dict[str, str]] = None, timeout: float = 60) -> Response:
        return self.request("GET", path, headers=headers, timeout=timeout)

    def upload_csv(
        self,
        csv_path: PathLike,
        path: str = "/api/import",
        field_name: str = "file",
        filename: Optional[str] = None,
        fields: Optional[Dict[str, str]] = None,
        headers: Optional[Dict[str, str]] = None,
        content_type: str = "text/csv",
        chunk_size: int = 1 << 20,
        on_chunk: Optional[Callable[[int, int], None]] = None,
        timeout: float = 600,
    ) -> Response:
        """POST ``csv_path`` as a streamed multipart form (field ``file``), as a browser or curl -F does.

        ``on_chunk(sent, size)`` is called after each chunk of the file with the file's bytes sent so far
        and its size, so a test can act (kill the server, say) at a chosen point of the upload.
        """
        csv_path = Path(csv_path)
        prefix, suffix, content_type_header = multipart_envelope(
            field_name, filename if filename is not None else csv_path.name, fields or {}, content_type
        )
        size = csv_path.stat().st_size
        total = len(prefix) + size + len(suffix)

        def chunks() -> Iterator[bytes]:
            yield prefix
            sent = 0
            with open(csv_path, "rb") as f:
                while True:
                    block = f.read(chunk_size)
                    if not block:
                        break
                    yield block
                    sent += len(block)
                    if on_chunk:
                        on_chunk(sent, size)
            yield suffix

        all_headers = {"Content-Type": content_type_header, "Content-Length": str(total)}
        all_headers.update(headers or {})
        return self.request("POST", path, body=chunks(), headers=all_headers, timeout=timeout)

    # Process control --------------------------------------------------------------------------------

    def wait_ready(self, timeout: float = 60) -> None:
        """Block until the server answers ``/-/versions.json``; raise with its log if it died or hung."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"datasette exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.get("/-/versions.json", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"datasette did not answer within {timeout}s:\n{self.log()}")

    def kill(self) -> int:
        """SIGKILL the server (no cleanup of any kind runs) and return its exit status."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        return self.process.wait()

    def stop(self, timeout: float = 15) -> int:
        """Ask the server to shut down (SIGTERM); SIGKILL it if it does not within ``timeout``."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.kill()

    def restart(self, timeout: float = 60) -> "Server":
        """Start a new process with the same command line and port (stopping this one if it runs)."""
        if self.alive():
            self.stop()
        self.process = _popen(self.port, self.argv, self.log_path, self.env)
        self.wait_ready(timeout)
        return self


def multipart_envelope(
    field_name: str, filename: str, fields: Dict[str, str], content_type: str = "text/csv"
) -> Tuple[bytes, bytes, str]:
    """The bytes before and after a file's content in a multipart/form-data body, and the header value."""
    boundary = "glyph" + uuid.uuid4().hex
    head = b""
    for name, value in fields.items():
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode("utf-8")
            + value.encode("utf-8")
            + b"\r\n"
        )
    safe_filename = filename.replace("\\", "\\\\").replace('"', '\\"')
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{safe_filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode("utf-8", "surrogateescape")
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    return head, tail, f"multipart/form-data; boundary={boundary}"


def write_config_file(directory: PathLike, metadata: Optional[dict], plugin_config: Optional[dict]) -> Path:
    """Write ``metadata.json`` holding ``metadata`` plus ``plugins: datasette-glyph: plugin_config``.

    Both Datasette 0.65 and 1.0a read plugin configuration from the metadata file (1.0a moves it into
    its configuration), so one file serves both.
    """
    data = json.loads(json.dumps(metadata or {}))
    if plugin_config is not None:
        data.setdefault("plugins", {})["datasette-glyph"] = plugin_config
    path = Path(directory) / "metadata.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def start_server(
    db_path: PathLike,
    *,
    metadata: Optional[dict] = None,
    metadata_path: Optional[PathLike] = None,
    plugin_config: Optional[dict] = None,
    settings: Optional[Dict[str, object]] = None,
    extra_args: Sequence[str] = (),
    env: Optional[Dict[str, str]] = None,
    port: Optional[int] = None,
    log_dir: Optional[PathLike] = None,
    timeout: float = 60,
) -> Server:
    """Start ``datasette db_path`` on a free port and wait until it answers.

    ``metadata`` and ``plugin_config`` (the datasette-glyph block) are written to a metadata file, or
    ``metadata_path`` names an existing one (the README's ``metadata.yml``, say). ``settings`` become
    ``--setting`` options. The server's output goes to ``server.log_path``.
    """
    db_path = Path(db_path)
    log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="glyph-server-"))
    argv = [datasette_command(), "serve", str(db_path), "--host", "127.0.0.1"]
    if metadata_path is not None:
        argv += ["-m", str(metadata_path)]
    elif metadata is not None or plugin_config is not None:
        argv += ["-m", str(write_config_file(log_dir, metadata, plugin_config))]
    for name, value in (settings or {}).items():
        argv += ["--setting", name, str(value)]
    argv += list(extra_args)
    full_env = dict(os.environ)
    full_env.setdefault("DATASETTE_SECRET", "glyph-test-secret")
    full_env.update(env or {})
    return spawn(db_path, port or free_port(), argv, log_dir / "server.log", full_env, timeout)


def _popen(port: int, argv: Sequence[str], log_path: Path, env: Dict[str, str]) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv) + ["--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal running the tests does not reach it
        )


def spawn(db_path: Path, port: int, argv: Sequence[str], log_path: Path, env: Dict[str, str], timeout: float):
    process = _popen(port, argv, log_path, env)
    server = Server(db_path=db_path, port=port, process=process, argv=list(argv), log_path=log_path, env=env)
    server.wait_ready(timeout)
    return server


@contextlib.contextmanager
def running_server(db_path: PathLike, **kwargs) -> Iterator[Server]:
    """``start_server`` as a context manager that always stops the server."""
    server = start_server(db_path, **kwargs)
    try:
        yield server
    finally:
        server.stop()
