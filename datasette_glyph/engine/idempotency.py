"""Idempotency keys for ``POST /api/import``: a retried request answers the first result instead of importing again.

A client that sends ``Idempotency-Key: <key>`` with an import can safely send the same request again (after a
timeout or a dropped connection): the key is kept with the batch, in the batch's own transaction, together with a
fingerprint of the request (the SHA-256 of the file or JSON body, the source and the description) and the answer
it got, as the text that was sent. A later request with the same key and the same fingerprint gets that text again
(with the header ``Idempotency-Replayed: true``) and imports nothing; the same key with another request, or from
another actor, is refused with 409. A request that failed (400, 422, ...) kept nothing, so its key is free for the
retry.

Imports run one at a time on the database's write thread and the key is looked up there, so two requests racing
with one key cannot both import.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sqlite3
from typing import Mapping, Optional

HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotency-Replayed"
MAX_KEY_CHARS = 255


class KeyRefused(Exception):
    """The key cannot be used: ``status`` and ``message`` are the answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def key_from(headers: Mapping[str, str]) -> Optional[str]:
    """The request's Idempotency-Key, or None without one; KeyRefused (400) for a key that is not 1 to 255
    visible ASCII characters."""
    if HEADER not in headers:
        return None
    key = headers[HEADER]
    if not key or len(key) > MAX_KEY_CHARS or not all("!" <= c <= "~" for c in key):
        shown = json.dumps(key[:40] + ("..." if len(key) > 40 else ""))
        raise KeyRefused(
            400,
            f"Idempotency-Key {shown} is not usable: send 1 to {MAX_KEY_CHARS} visible ASCII characters "
            "(a UUID is a good key)",
        )
    return key


def fingerprint(sha256: str, source: Optional[str], description: Optional[str]) -> str:
    """What makes two requests the same import: the bytes sent, the source and the description."""
    return hashlib.sha256(json.dumps([sha256, source, description]).encode("utf-8")).hexdigest()


def first_answer(conn: sqlite3.Connection, key: str, actor: Optional[str], request_sha256: str) -> Optional[str]:
    """The answer the first request with ``key`` got (the text kept by ``remember``), if this is the same request
    again; None if the key is new. KeyRefused (409) if the key was used for another request or by another actor."""
    row = conn.execute(
        "SELECT actor, request_sha256, import_id, response FROM import_idempotency_keys WHERE idempotency_key = ?",
        [key],
    ).fetchone()
    if row is None:
        return None
    first_actor, first_sha256, import_id, response = row
    if first_actor != actor:
        raise KeyRefused(409, f"Idempotency-Key {json.dumps(key)} belongs to another actor; send a new key")
    if first_sha256 != request_sha256:
        raise KeyRefused(
            409,
            f"Idempotency-Key {json.dumps(key)} was first sent with another request (import {import_id}); "
            "the same key must come with the same file, source and description. Send a new key for a new import",
        )
    return response


def remember(
    conn: sqlite3.Connection, key: str, actor: Optional[str], request_sha256: str, import_id: str, response: str
) -> None:
    """Keep ``key`` with the batch it made and ``response``, the body of the answer exactly as it is sent (a
    replay sends the same bytes); call inside the import's transaction."""
    conn.execute(
        "INSERT INTO import_idempotency_keys (idempotency_key, actor, request_sha256, import_id, response, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            key,
            actor,
            request_sha256,
            import_id,
            response,
            datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat(sep=" "),
        ],
    )
