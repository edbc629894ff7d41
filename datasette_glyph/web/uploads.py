"""Request bodies without holding them in memory: an upload streams to a temp file as it arrives.

Datasette offers no streaming body API on either supported version (0.65 reads the whole body into memory,
1.0a caps it at 2 MiB), so the views read ASGI messages from ``request.receive`` themselves. A multipart body
goes through ``python_multipart``'s streaming parser: the file part to a temp file, a few small text fields
to memory, each capped. A JSON body goes to a temp file whole. Either way the SHA-256 and size are taken
from the bytes as they arrive, so that the importer can check that the file it reads is the file received,
and the temp file is removed when the ``multipart_upload`` / ``body_upload`` context ends.

Where temp files live: the upload folder (``upload_dir``) must belong to the server's user and be closed to
everyone else (0700); ``upload_dir`` creates it so, makes an own folder private, and refuses one owned by
another user or reached through a symbolic link. Inside it each server process makes its own private folder,
``glyph-process-<random>``, holding an exclusive ``flock`` on it for as long as the process lives, and writes
its temp files there. ``clean_stale_uploads`` (run at startup) removes the folders whose lock nobody holds:
their process has ended. A live server's folder is locked, so servers sharing the upload folder never remove
each other's uploads, whatever their host names and process ids (containers on one volume included).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import gc
import hashlib
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Dict, List, Optional, Tuple

from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..engine.folders import UnsafeFolder, made_private

PROCESS_PREFIX = "glyph-process-"
NEW_PREFIX = ".glyph-new-"  # a process folder before it is locked; never taken for a stale one
SUFFIX = ".part"
DEFAULT_DIR_NAME = "datasette-glyph-uploads"
MAX_FIELD_BYTES = 64 * 1024  # cap on each text field (source, description, ...)
MAX_FIELDS = 16  # cap on the number of text fields in one multipart body
MAX_PART_HEADER_BYTES = 16 * 1024  # cap on the headers of one part
# errno values that mean the upload folder's disk (or the process's file size limit) has no room left
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _libc_function(name: str):
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):  # not glibc
        return None


_trim = _libc_function("malloc_trim")
_mallopt = _libc_function("mallopt")
M_MMAP_THRESHOLD = -3
# Allocations of this size or more get pages of their own, returned to the system when freed.
LARGE_ALLOCATION_BYTES = 1024 * 1024


def return_large_allocations() -> None:
    """Have glibc map every allocation of 1 MiB or more on its own, and unmap it when it is freed.

    A JSON body's longest string (up to the body's size) is built on a worker thread; glibc otherwise serves
    such a block from that thread's arena once its adaptive threshold has grown, and keeps it: a server held on
    to 29 MB after a body whose one string was 30 MB, and malloc_trim could not give it back.
    """
    if _mallopt is not None:
        _mallopt(M_MMAP_THRESHOLD, LARGE_ALLOCATION_BYTES)


RELEASE_DELAY_SECONDS = 0.05


def release_memory() -> None:
    """Give memory freed by an import back to the operating system (glibc keeps it otherwise).

    An import's page cache (32 MiB) and a refused body's parser buffers and largest values are freed when it
    ends, though some only by the cycle collector (an exception's traceback holds the parser's frames), and glibc
    keeps freed memory for reuse: a server's RSS grew by 75 MB over ten refused 30 MB bodies without this.
    """
    gc.collect()
    if _trim is not None:
        _trim(0)


def release_memory_soon() -> None:
    """``release_memory`` just after the current request is answered: while an upload's context ends, a refusal
    is still on its way up (its traceback holding the parser's frames), and only afterwards can it be freed."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        release_memory()
    else:
        loop.call_later(RELEASE_DELAY_SECONDS, release_memory)


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


class UnsafeUploadDir(UploadError, UnsafeFolder):
    """The upload folder is not private to the server's user; nothing may be written there."""

    def __init__(self, message: str):
        UploadError.__init__(self, 503, message)


class UploadFolderFull(UploadError):
    def __init__(self):
        super().__init__(507, "The server's upload folder is full; the upload was not kept (nothing was written)")


@dataclass
class Upload:
    """A received body: the file part (or the whole JSON body) on disk, the other fields as text."""

    path: Optional[Path] = None  # temp file holding the file part; None if the body had none
    filename: Optional[str] = None  # the client's file name, without any directory part
    size: int = 0  # bytes in the file part
    fields: Dict[str, str] = field(default_factory=dict)
    sha256: Optional[str] = None  # of the file part's bytes as they arrived


def default_upload_dir() -> Path:
    """``datasette-glyph-uploads-<uid>`` in the system temp folder: one per user, so users never share one."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"{DEFAULT_DIR_NAME}-{uid}"


def upload_dir(configured: Optional[str] = None) -> Path:
    """The folder for temp files (the configured one, else ``default_upload_dir()``), created private.

    Raises UnsafeUploadDir for a folder that another user owns, that is a symbolic link or not a folder.
    An own folder that others may read or write is made private (0700) again.
    """
    return check_upload_dir(configured)[0]


def check_upload_dir(configured: Optional[str] = None) -> Tuple[Path, Optional[str]]:
    """``upload_dir``'s folder, and a note to print when an existing one had to be made private."""
    path = Path(configured) if configured else default_upload_dir()
    try:
        return path, made_private(path)
    except UnsafeFolder as e:
        raise UnsafeUploadDir(e.message) from None


class _ProcessFolder:
    """This process's own folder inside an upload folder, locked for as long as the process lives."""

    def __init__(self, base: Path):
        new = base / f"{NEW_PREFIX}{uuid.uuid4().hex}"
        os.mkdir(new, 0o700)
        self.fd = os.open(new, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Only a locked folder takes the name that clean_stale_uploads looks at.
        self.path = base / f"{PROCESS_PREFIX}{new.name[len(NEW_PREFIX) :]}"
        os.rename(new, self.path)
        self.pid = os.getpid()


_folders: Dict[str, _ProcessFolder] = {}
_folders_lock = threading.Lock()


def process_dir(base: Path) -> Path:
    """This process's private, locked folder inside the upload folder ``base`` (made on first use)."""
    key = os.path.abspath(base)
    with _folders_lock:
        folder = _folders.get(key)
        if folder is None or folder.pid != os.getpid() or not folder.path.is_dir():
            folder = _folders[key] = _ProcessFolder(Path(key))
        return folder.path


def new_temp_path(directory: Path) -> Path:
    """A fresh temp file name in this process's folder inside the upload folder ``directory``."""
    return process_dir(directory) / f"upload-{uuid.uuid4().hex}{SUFFIX}"


def clean_stale_uploads(directory: Path) -> List[Path]:
    """Remove the process folders (and the temp files in them) of processes that have ended; return them.

    A folder is stale when nobody holds its lock: the kernel drops a process's locks when it ends, however
    it ends. Folders of live processes, on this host or any other sharing the folder, stay locked and are
    left alone, and so is everything that is not a process folder.
    """
    removed = []
    own = {str(f.path) for f in _folders.values() if f.pid == os.getpid()}
    for path in directory.iterdir():
        if not path.name.startswith(PROCESS_PREFIX) or str(path) in own:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # locked: its process runs
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
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


def _create(path: Path) -> int:
    # O_EXCL: never write into a file that is already there; 0600: uploads are nobody else's business
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    except OSError as e:
        if e.errno in _NO_ROOM:
            raise UploadFolderFull() from None
        raise


def _write(file, data: bytes) -> None:
    try:
        file.write(data)
    except OSError as e:
        if e.errno in _NO_ROOM:
            raise UploadFolderFull() from None
        raise


def _close(file) -> None:
    try:
        file.close()  # flushes the buffer: the last write may find the disk full
    except OSError as e:
        if e.errno in _NO_ROOM:
            raise UploadFolderFull() from None
        raise


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
        self._header_bytes = 0
        self._sha256 = hashlib.sha256()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self._header(self._header_field, data[start:end]),
            "on_header_value": lambda data, start, end: self._header(self._header_value, data[start:end]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def _header(self, buffer: bytearray, data: bytes) -> None:
        self._header_bytes += len(data)
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise UploadError(
                400, f"Malformed multipart body: a part's headers are over {MAX_PART_HEADER_BYTES:,} bytes"
            )
        buffer.extend(data)

    def on_part_begin(self):
        self._headers = {}
        self._name = None
        self._buffer = None
        self._header_bytes = 0

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
            fd = _create(path)
            self.upload.path = path
            self.file = os.fdopen(fd, "wb")
            filename = params.get(b"filename")
            if filename is not None:
                # Some browsers send a full path; keep the last component only
                base = filename.decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
                self.upload.filename = base or None
        else:
            if len(self.upload.fields) >= MAX_FIELDS:
                raise UploadError(400, f"The form has more than {MAX_FIELDS} text fields")
            self._buffer = bytearray()

    def on_part_data(self, data, start, end):
        if self._name == self.file_field:
            piece = data[start:end]
            _write(self.file, piece)
            self._sha256.update(piece)
            self.upload.size += end - start
        else:
            self._buffer.extend(data[start:end])
            if len(self._buffer) > MAX_FIELD_BYTES:
                raise UploadError(400, f"The form field {self._name!r} is over {MAX_FIELD_BYTES:,} bytes")

    def on_part_end(self):
        if self._name == self.file_field:
            _close(self.file)
            self.upload.sha256 = self._sha256.hexdigest()
        elif self._buffer is not None:
            try:
                self.upload.fields[self._name] = self._buffer.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(400, f"The form field {self._name!r} is not UTF-8 text") from None

    def on_end(self):
        self.ended = True

    def close(self):
        if self.file is not None and not self.file.closed:
            with contextlib.suppress(OSError):
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
        release_memory_soon()


@contextlib.asynccontextmanager
async def body_upload(receive, directory: Path, max_bytes: int, empty_message: str) -> AsyncIterator[Upload]:
    """Stream a whole request body (a JSON import) to a temp file; yield an ``Upload`` with its SHA-256 and size.

    Raises UploadError (400 with ``empty_message``) for an empty body, (413) for one over ``max_bytes``, (507)
    when the upload folder's disk is full. The temp file is removed when the block ends, however it ends.
    """
    upload = Upload()
    sha256 = hashlib.sha256()
    file = None
    try:
        upload.path = new_temp_path(directory)
        file = os.fdopen(_create(upload.path), "wb")
        async for chunk in body_chunks(receive, max_bytes):
            _write(file, chunk)
            sha256.update(chunk)
            upload.size += len(chunk)
        _close(file)
        if not upload.size:
            raise UploadError(400, empty_message)
        upload.sha256 = sha256.hexdigest()
        yield upload
    finally:
        if file is not None and not file.closed:
            with contextlib.suppress(OSError):
                file.close()
        if upload.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(upload.path)
        release_memory_soon()
