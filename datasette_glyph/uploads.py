"""Request bodies without holding them in memory: a multipart upload streams its file part to a temp file.

Datasette offers no streaming body API on either supported version (0.65 reads the whole body into memory,
1.0a caps it at 2 MiB), so the views read ASGI messages from ``request.receive`` themselves and feed them to
``python_multipart``'s streaming parser. The file part goes straight to a file in the plugin's upload folder;
small text fields are kept in memory, each with a cap. Whatever happens, the temp file is removed when the
``multipart_upload`` context ends.

Temp files are named ``glyph-upload.<host>.<pid>.<random>.part``. A server that is killed leaves its files
behind; ``clean_stale_uploads`` (run at startup) removes those whose process no longer runs on this host, so
several servers can share the folder without removing each other's uploads in flight.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Dict, List, Optional

from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

PREFIX = "glyph-upload"
SUFFIX = ".part"
DEFAULT_DIR_NAME = "datasette-glyph-uploads"
MAX_FIELD_BYTES = 64 * 1024  # cap on each text field (source, description, ...)


class UploadError(Exception):
    """The request body cannot be accepted; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ClientDisconnected(UploadError):
    """The client went away before the body was complete."""

    def __init__(self):
        super().__init__(400, "The client disconnected before the request body was complete")


@dataclass
class Upload:
    """A received multipart body: the file part on disk, the other fields as text."""

    path: Optional[Path] = None  # temp file holding the file part; None if the body had none
    filename: Optional[str] = None  # the client's file name, without any directory part
    size: int = 0  # bytes in the file part
    fields: Dict[str, str] = field(default_factory=dict)


def upload_dir(configured: Optional[str] = None) -> Path:
    """The folder for temp files: the configured one, else ``datasette-glyph-uploads`` in the system temp dir."""
    path = Path(configured) if configured else Path(tempfile.gettempdir()) / DEFAULT_DIR_NAME
    path.mkdir(parents=True, exist_ok=True)
    return path


def _host() -> str:
    return socket.gethostname().replace(".", "_") or "localhost"


def new_temp_path(directory: Path) -> Path:
    """A fresh temp file name in ``directory`` that records this host and process."""
    return directory / f"{PREFIX}.{_host()}.{os.getpid()}.{uuid.uuid4().hex}{SUFFIX}"


def _owner(path: Path):
    """(host, pid) from a temp file name, or None if the name is not one of ours."""
    name = path.name
    if not (name.startswith(PREFIX + ".") and name.endswith(SUFFIX)):
        return None
    parts = name[len(PREFIX) + 1 : -len(SUFFIX)].split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    except OSError as e:
        return e.errno != errno.ESRCH
    return True


def clean_stale_uploads(directory: Path) -> List[Path]:
    """Remove temp files left by processes of this host that no longer run; return what was removed.

    Files of this process, of live processes, of other hosts (a folder shared between machines or
    containers) and files that are not ours are left alone.
    """
    removed = []
    host, me = _host(), os.getpid()
    for path in directory.iterdir():
        owner = _owner(path)
        if owner is None or owner[0] != host or owner[1] == me or _pid_alive(owner[1]):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def content_type(headers) -> tuple:
    """(media type, parameters) of a request, both as str, media type lower-cased."""
    media, params = parse_options_header(headers.get("content-type", ""))
    return media.decode("latin-1"), {k.decode("latin-1"): v.decode("latin-1") for k, v in params.items()}


def check_content_length(headers, max_bytes: int) -> None:
    """Refuse a body whose declared size is over ``max_bytes`` before reading any of it."""
    declared = headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise UploadError(400, f"Content-Length is not a number: {declared!r}") from None
    if length > max_bytes:
        raise UploadError(413, f"The request body is {length:,} bytes; the limit is {max_bytes:,} bytes")


async def body_chunks(receive, max_bytes: int) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive, stopping with 413 as soon as more than ``max_bytes`` came in."""
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > max_bytes:
            raise UploadError(413, f"The request body is over the limit of {max_bytes:,} bytes")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def read_body(receive, max_bytes: int) -> bytes:
    """The whole body in memory, for small payloads only (413 over ``max_bytes``)."""
    chunks = [chunk async for chunk in body_chunks(receive, max_bytes)]
    return b"".join(chunks)


class _MultipartSink:
    """Callbacks for the streaming parser: the file part to disk, other parts to small buffers."""

    def __init__(self, directory: Path, file_field: str, upload: Upload):
        self.directory = directory
        self.file_field = file_field
        self.upload = upload
        self.file = None
        self.ended = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: Dict[str, str] = {}
        self._name: Optional[str] = None
        self._buffer: Optional[bytearray] = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self):
        self._headers = {}
        self._name = None
        self._buffer = None

    def on_header_end(self):
        self._headers[bytes(self._header_field).decode("latin-1").strip().lower()] = bytes(self._header_value).decode(
            "latin-1"
        )
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self):
        disposition, params = parse_options_header(self._headers.get("content-disposition", ""))
        name = params.get(b"name")
        if disposition != b"form-data" or name is None:
            raise UploadError(400, "Malformed multipart body: a part has no Content-Disposition: form-data name")
        self._name = name.decode("utf-8", "replace")
        if self._name == self.file_field:
            if self.upload.path is not None:
                raise UploadError(
                    400, f"Send one file per request: the body has more than one {self.file_field!r} part"
                )
            path = new_temp_path(self.directory)
            # O_EXCL: never write into a file that is already there; 0600: uploads are nobody else's business
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
            self.upload.path = path
            self.file = os.fdopen(fd, "wb")
            filename = params.get(b"filename")
            if filename is not None:
                # Some browsers send a full path; keep the last component only
                base = filename.decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
                self.upload.filename = base or None
        else:
            self._buffer = bytearray()

    def on_part_data(self, data, start, end):
        if self._name == self.file_field:
            self.file.write(data[start:end])
            self.upload.size += end - start
        else:
            self._buffer.extend(data[start:end])
            if len(self._buffer) > MAX_FIELD_BYTES:
                raise UploadError(400, f"The form field {self._name!r} is over {MAX_FIELD_BYTES:,} bytes")

    def on_part_end(self):
        if self._name == self.file_field:
            self.file.close()
        elif self._buffer is not None:
            try:
                self.upload.fields[self._name] = self._buffer.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(400, f"The form field {self._name!r} is not UTF-8 text") from None

    def on_end(self):
        self.ended = True

    def close(self):
        if self.file is not None and not self.file.closed:
            self.file.close()


@contextlib.asynccontextmanager
async def multipart_upload(
    receive, headers, directory: Path, max_bytes: int, file_field: str = "file"
) -> AsyncIterator[Upload]:
    """Stream a ``multipart/form-data`` body; yield an ``Upload`` whose file part is on disk.

    Raises UploadError (400) for a body that is empty, malformed, truncated or has no ``file_field`` part,
    (413) for one over ``max_bytes``. The temp file is removed when the block ends, however it ends.
    """
    media, params = content_type(headers)
    boundary = params.get("boundary")
    if media != "multipart/form-data" or not boundary:
        raise UploadError(400, "Content-Type must be multipart/form-data with a boundary")
    upload = Upload()
    sink = _MultipartSink(directory, file_field, upload)
    try:
        try:
            parser = MultipartParser(boundary.encode("latin-1"), sink.callbacks())
        except FormParserError as e:  # an over-long boundary
            raise UploadError(400, f"Malformed multipart body: {e}") from None
        received = 0
        async for chunk in body_chunks(receive, max_bytes):
            received += len(chunk)
            if sink.ended:
                continue  # the epilogue after the closing boundary carries nothing
            try:
                parser.write(chunk)
            except MultipartParseError:
                raise UploadError(
                    400, "Malformed multipart body: it does not follow the boundary given in Content-Type"
                ) from None
        if not received:
            raise UploadError(400, f"The request body is empty; send the file as the multipart field {file_field!r}")
        if not sink.ended:
            raise UploadError(400, "The multipart body is truncated: it ends before its closing boundary")
        if upload.path is None:
            raise UploadError(
                400, f"The multipart body has no {file_field!r} field; send the CSV file as {file_field!r}"
            )
        yield upload
    finally:
        sink.close()
        if upload.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(upload.path)
