"""Stored outputs: where a task's saved files live, their signed expiring URLs, and serving them.

A saved output is ``outputs/{task_id}/{output_id}/{name}`` on the storage backend plus an index record
``outputs/index/{output_id}.json`` (task, name, size, expiry). Its public URL: on S3 storage a presigned
GET URL; on local storage ``{gateway_url}/output/id/{id}?expires=<unix>&sig=<hex hmac-sha256 of
"{id}:{expires}">`` under the key ``output_signing_key`` kept beside the secrets; the gateway serves it
through ``http_response``. An output is kept ``BEAMRAY_OUTPUT_RETENTION_S`` (default 3600, Beam's hour)
after saving, or until the latest public URL's expiry when later; ``cleanup_expired()`` removes what is
past that (on either backend; the gateway calls it every few minutes). Beam's ``Output`` class
(``adapters/output.py``) stores through ``store_output``.

The gateway shares its origin with users' asgi apps, so a file whose name a task chose must never render
as active content there: only ``INLINE_TYPES`` are shown inline, everything else is an
``application/octet-stream`` attachment, always with ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import mimetypes
import os
import secrets as _random
import stat as _stat
import time
import uuid
from pathlib import Path
from typing import IO, Any, Iterator
from urllib.parse import parse_qs, quote

from beamray import storage

SIGNING_KEY_NAME = "output_signing_key"
DEFAULT_EXPIRES = 3600
CHUNK_BYTES = 1 << 20  # a served file is read and sent this much at a time
# Types browsers display without running anything; the rest is served as a download.
INLINE_TYPES = frozenset({
    "text/plain", "application/json", "application/pdf",
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp",
    "audio/mpeg", "audio/wav", "audio/x-wav", "audio/ogg", "audio/flac", "video/mp4", "video/webm", "video/ogg",
})


class OutputNotFoundError(Exception):
    """The saved output is gone (expired or deleted)."""


def _retention() -> float:
    return float(os.environ.get("BEAMRAY_OUTPUT_RETENTION_S", DEFAULT_EXPIRES))


def _index_key(output_id: str) -> str:
    return f"outputs/index/{output_id}.json"


def read_index(output_id: str, store: storage.Storage | None = None) -> dict[str, Any] | None:
    try:
        uuid.UUID(output_id)
    except (ValueError, TypeError, AttributeError):
        return None
    store = store or storage.get_storage()
    try:
        return json.loads(store.read_bytes(_index_key(output_id)))
    except (FileNotFoundError, ValueError):
        return None

def store_output(task_id: str, source: Path) -> str:
    """Copy ``source`` (a file) to the backend as one of ``task_id``'s outputs and index it; its id."""
    output_id = str(uuid.uuid4())
    key = f"outputs/{task_id}/{output_id}/{source.name}"
    store = storage.get_storage()
    info = store.upload(key, source)
    now = time.time()
    record = {"id": output_id, "task_id": task_id, "name": source.name, "key": key, "size": info.size,
              "mode": _stat.filemode(os.stat(source).st_mode), "created_at": now, "expires_at": now + _retention()}
    store.write_bytes(_index_key(output_id), json.dumps(record).encode())
    return output_id


def signing_key() -> str:
    from beamray import secrets

    return secrets.private_value(SIGNING_KEY_NAME, lambda: _random.token_hex(32))


def sign(output_id: str, expires: int, key: str | None = None) -> str:
    return hmac.new((key or signing_key()).encode(), f"{output_id}:{int(expires)}".encode(), hashlib.sha256).hexdigest()


def verify(output_id: str, expires: Any, sig: Any, now: float | None = None) -> bool:
    """True when ``sig`` signs ``output_id`` until ``expires`` (unix seconds) and that is still ahead."""
    try:
        expires = int(expires)
    except (TypeError, ValueError):
        return False
    if not isinstance(sig, str) or not sig.isascii() or expires <= (time.time() if now is None else now):
        return False  # compare_digest refuses non-ASCII str: such a signature is simply wrong
    return hmac.compare_digest(sign(output_id, expires), sig)


def _gateway_url() -> str:
    from beamray import cluster

    return (os.environ.get("BEAMRAY_PUBLIC_URL") or cluster.gateway_url()).rstrip("/")


def served_by_gateway() -> bool:
    """True when output links point at the gateway (local storage); S3 links are presigned and need none."""
    return not isinstance(storage.get_storage(), storage.S3Storage)


def public_url(output_id: str, expires: int = DEFAULT_EXPIRES) -> str:
    """A URL for output ``output_id`` valid ``expires`` seconds; extends the output's retention to match."""
    expires = int(expires)
    if expires <= 0:
        raise ValueError(f"expires must be a positive number of seconds, got {expires}")
    store = storage.get_storage()
    record = read_index(output_id, store)
    if record is None:
        raise OutputNotFoundError(f"Output {output_id} not found (expired or deleted).")
    until = int(time.time()) + expires
    if until > record["expires_at"]:
        record["expires_at"] = until
        store.write_bytes(_index_key(output_id), json.dumps(record).encode())
    if isinstance(store, storage.S3Storage):
        return store.presigned_url(record["key"], expires, filename=record["name"])
    return f"{_gateway_url()}/output/id/{output_id}?expires={until}&sig={sign(output_id, until)}"


def open_output(output_id: str) -> tuple[str, IO[bytes], int]:
    """(file name, an open stream, size) of a live output; missing or expired → FileNotFoundError.

    Opened before it is sent, so a cleanup that removes the file meanwhile cannot cut the answer short.
    """
    store = storage.get_storage()
    record = read_index(output_id, store)
    if record is None or record["expires_at"] <= time.time():
        raise FileNotFoundError(f"output {output_id}")
    if isinstance(store, storage.LocalStorage):
        path = store.local_path(record["key"])
        if not path.is_file():
            raise FileNotFoundError(f"output {output_id}")
        handle = path.open("rb")
        return record["name"], handle, os.fstat(handle.fileno()).st_size
    return (record["name"], *store.open_stream(record["key"]))


def outputs_for_task(task_id: str, expires: int = DEFAULT_EXPIRES) -> list[dict[str, Any]]:
    """The task API's ``outputs``: ``[{"name", "url", "expires_in"}]`` for the task's live outputs."""
    store = storage.get_storage()
    now = time.time()
    found = []
    for info in store.list(f"outputs/{storage.check_key(task_id)}"):
        parts = info.key.split("/")
        if len(parts) != 4:
            continue
        record = read_index(parts[2], store)
        if record is None or record["expires_at"] <= now:
            continue
        expires_in = max(1, min(int(expires), int(record["expires_at"] - now)))
        if isinstance(store, storage.S3Storage):
            url = store.presigned_url(record["key"], expires_in, filename=record["name"])
        else:
            until = int(now) + expires_in
            url = f"{_gateway_url()}/output/id/{record['id']}?expires={until}&sig={sign(record['id'], until)}"
        found.append({"name": record["name"], "url": url, "expires_in": expires_in})
    return found


def cleanup_expired(now: float | None = None) -> int:
    """Delete outputs past their retention; returns how many went."""
    store = storage.get_storage()
    now = time.time() if now is None else now
    removed = 0
    for info in store.list("outputs/index"):
        try:
            record = json.loads(store.read_bytes(info.key))
        except (FileNotFoundError, ValueError):
            continue
        if record.get("expires_at", 0) > now:
            continue
        store.delete_prefix(f"outputs/{record['task_id']}/{record['id']}")
        store.delete(info.key)
        removed += 1
    return removed


def http_response(output_id: str, query_string: bytes | str, now: float | None = None) -> dict[str, Any]:
    """The gateway's answer to ``GET /output/id/{id}?expires=…&sig=…``: ``{"status", "headers", "body"}``.

    Valid → 200 whose ``body`` is an iterator of chunks (the file read as it is sent, never whole);
    bad or expired signature → 403; gone → 404 (those bodies are bytes).
    """
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    query = parse_qs(query_string)
    expires, sig = query.get("expires", [""])[0], query.get("sig", [""])[0]
    if not verify(output_id, expires, sig, now=now):
        return _json(403, {"error": "invalid or expired output URL"})
    try:
        name, stream, size = open_output(output_id)
    except FileNotFoundError:
        return _json(404, {"error": "output not found"})
    guessed = mimetypes.guess_type(name)[0] or ""
    inline = guessed in INLINE_TYPES
    content_type, disposition = (guessed, "inline") if inline else ("application/octet-stream", "attachment")
    headers = [(b"content-type", content_type.encode()),
               (b"content-disposition", f"{disposition}; filename*=UTF-8''{quote(name)}".encode()),
               (b"content-length", str(size).encode()),
               (b"x-content-type-options", b"nosniff")]
    return {"status": 200, "headers": headers, "body": _chunks(stream)}


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """A local file or an S3 body, read (and closed) as it is sent: never whole in memory."""
    with contextlib.closing(stream):
        while chunk := stream.read(CHUNK_BYTES):
            yield chunk


def _json(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"status": status, "headers": [(b"content-type", b"application/json")], "body": json.dumps(body).encode()}
