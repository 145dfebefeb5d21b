"""Beam's ``Output``: a file or directory a task keeps after it ends, with an expiring public URL.

``save()`` copies the file (a directory is zipped first) to the storage backend at
``outputs/{task_id}/{output_id}/{name}`` and records ``outputs/index/{output_id}.json`` (task, name,
size, expiry). ``public_url(expires)``: on S3 storage a presigned GET URL; on local storage
``{gateway_url}/output/id/{id}?expires=<unix>&sig=<hex hmac-sha256 of "{id}:{expires}">`` under the key
``output_signing_key`` kept beside the secrets; the gateway serves it through ``http_response``.

An output is kept ``BEAMRAY_OUTPUT_RETENTION_S`` (default 3600, Beam's hour) after saving, or until the
latest public URL's expiry when later; ``cleanup_expired()`` removes what is past that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import mimetypes
import os
import secrets as _random
import shutil
import stat as _stat
import tempfile
import threading
import time
import uuid
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Union
from urllib.parse import parse_qs, quote

from beamray import storage

SIGNING_KEY_NAME = "output_signing_key"
DEFAULT_EXPIRES = 3600


class OutputCannotRunLocallyError(Exception):
    """``Output`` used outside a task (``CONTAINER_ID`` unset)."""


class OutputNotFoundError(Exception):
    """The saved output is gone (expired or deleted)."""


class OutputSaveError(Exception):
    """Saving the output failed."""


class OutputNotSavedError(Exception):
    """``stat()`` / ``public_url()`` before ``save()``."""


class OutputPublicURLError(Exception):
    """No public URL could be made."""


class OutputTaskIdError(Exception):
    """``TASK_ID`` is unset, so there is no task to attach the output to."""


class Stat(NamedTuple):
    mode: str  # protection bits, as ``ls -l`` shows them
    size: int  # bytes
    atime: datetime
    mtime: datetime

    def to_dict(self) -> Dict[str, Any]:
        return self._asdict()


def _retention() -> float:
    return float(os.environ.get("BEAMRAY_OUTPUT_RETENTION_S", DEFAULT_EXPIRES))


def _index_key(output_id: str) -> str:
    return f"outputs/index/{output_id}.json"


def _read_index(output_id: str, store: storage.Storage | None = None) -> dict[str, Any] | None:
    try:
        uuid.UUID(output_id)
    except (ValueError, TypeError, AttributeError):
        return None
    store = store or storage.get_storage()
    try:
        return json.loads(store.read_bytes(_index_key(output_id)))
    except (FileNotFoundError, ValueError):
        return None


class Output:
    """A file or directory to persist after a task has ended."""

    Stat = Stat  # Beam exposes it as Output.Stat

    _tmp_dir = Path(tempfile.gettempdir()) / "outputs"

    def __init__(self, *, path: Union[Path, str]) -> None:
        self.prepare_tmp_dir()
        if not os.environ.get("CONTAINER_ID"):
            raise OutputCannotRunLocallyError("Output can only be used inside a task (CONTAINER_ID is unset).")
        self.task_id = os.environ.get("TASK_ID", "")
        if not self.task_id:
            raise OutputTaskIdError("Output needs the task's TASK_ID, which is unset.")
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"Output path {str(self.path)!r} does not exist.")
        self.id: Optional[str] = None
        self._scratch = self._tmp_dir / uuid.uuid4().hex

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_scratch", "/nonexistent-beamray"), ignore_errors=True)

    @classmethod
    def prepare_tmp_dir(cls) -> None:
        cls._tmp_dir.mkdir(mode=0o755, parents=True, exist_ok=True)

    @property
    def zipped_path(self) -> Path:
        if not self.path.is_dir():
            raise ValueError("Output must be a directory to get the zipped path.")
        return self._scratch / f"{self.path.name or 'output'}.zip"

    def _stored_name(self) -> str:
        return self.zipped_path.name if self.path.is_dir() else self.path.name

    def zip_dir(self, dir_path: Union[Path, str], compress_level: int = 9) -> Path:
        dir_path = Path(dir_path)
        target = self.zipped_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compress_level) as archive:
            for file_path in sorted(dir_path.rglob("*")):
                if file_path.is_file():
                    archive.write(file_path, file_path.relative_to(dir_path))
        return target

    @classmethod
    def from_pil_image(cls, image: Any, format: Optional[str] = "png") -> "Output":
        """An Output of a PIL image, written to a temporary ``{uuid}.{format}`` file."""
        cls.prepare_tmp_dir()
        directory = cls._tmp_dir / uuid.uuid4().hex
        directory.mkdir(parents=True)
        path = directory / uuid.uuid4().hex
        if format:
            path = path.with_suffix(f".{format.lower().lstrip('.')}")
        image.save(path, format=format.lstrip(".") if format else format)
        output = cls(path=path)
        output._scratch = directory
        return output

    @classmethod
    def from_file(cls, file_handle: Any) -> "Output":
        """An Output of an open file's contents, under the file's name."""
        cls.prepare_tmp_dir()
        directory = cls._tmp_dir / uuid.uuid4().hex
        directory.mkdir(parents=True)
        path = directory / (Path(str(getattr(file_handle, "name", "") or "output")).name or "output")
        if hasattr(file_handle, "seek"):
            file_handle.seek(0)
        data = file_handle.read()
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        output = cls(path=path)
        output._scratch = directory
        return output

    def save(self) -> "Output":
        """Store the output (a directory as ``<name>.zip``); returns self, ``id`` set."""
        try:
            source = self.zip_dir(self.path) if self.path.is_dir() else self.path
            output_id = str(uuid.uuid4())
            key = f"outputs/{self.task_id}/{output_id}/{source.name}"
            store = storage.get_storage()
            info = store.upload(key, source)
            now = time.time()
            record = {"id": output_id, "task_id": self.task_id, "name": source.name, "key": key, "size": info.size,
                      "mode": _stat.filemode(os.stat(source).st_mode), "created_at": now,
                      "expires_at": now + _retention()}
            store.write_bytes(_index_key(output_id), json.dumps(record).encode())
        except (OSError, ValueError) as exc:
            raise OutputSaveError(f"saving {self.path} failed: {exc}") from exc
        except Exception as exc:  # botocore errors
            raise OutputSaveError(f"saving {self.path} failed: {exc}") from exc
        self.id = output_id
        return self

    def stat(self) -> Stat:
        if not self.id:
            raise OutputNotSavedError("Save the output first (output.save()).")
        record = _read_index(self.id)
        info = storage.get_storage().stat(record["key"]) if record else None
        if record is None or info is None:
            raise OutputNotFoundError(f"Output {self.id} not found (expired or deleted).")
        when = datetime.fromtimestamp(info.mtime, timezone.utc)
        return Stat(mode=record.get("mode", "-rw-r--r--"), size=info.size, atime=when, mtime=when)

    def exists(self) -> bool:
        try:
            return bool(self.stat())
        except (OutputNotSavedError, OutputNotFoundError):
            return False

    def public_url(self, expires: int = DEFAULT_EXPIRES) -> str:
        """A URL anyone can GET until ``expires`` seconds from now; the file is kept at least that long."""
        if not self.id:
            raise OutputNotSavedError("Save the output first (output.save()).")
        try:
            return public_url(self.id, expires)
        except (OutputNotFoundError, ValueError) as exc:
            raise OutputPublicURLError(str(exc)) from exc
        except Exception as exc:
            raise OutputPublicURLError(f"no public URL for output {self.id}: {exc}") from exc

    def __repr__(self) -> str:
        return f"Output(path={str(self.path)!r}, id={self.id!r})"


# ----------------------------------------------------------------------------------------------------
# URLs, the gateway side, cleanup


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
    if not isinstance(sig, str) or expires <= (time.time() if now is None else now):
        return False
    return hmac.compare_digest(sign(output_id, expires), sig)


def _gateway_url() -> str:
    from beamray import cluster

    return (os.environ.get("BEAMRAY_PUBLIC_URL") or cluster.gateway_url()).rstrip("/")


def public_url(output_id: str, expires: int = DEFAULT_EXPIRES) -> str:
    """A URL for output ``output_id`` valid ``expires`` seconds; extends the output's retention to match."""
    expires = int(expires)
    if expires <= 0:
        raise ValueError(f"expires must be a positive number of seconds, got {expires}")
    store = storage.get_storage()
    record = _read_index(output_id, store)
    if record is None:
        raise OutputNotFoundError(f"Output {output_id} not found (expired or deleted).")
    until = int(time.time()) + expires
    if until > record["expires_at"]:
        record["expires_at"] = until
        store.write_bytes(_index_key(output_id), json.dumps(record).encode())
    if isinstance(store, storage.S3Storage):
        return store.presigned_url(record["key"], expires, filename=record["name"])
    return f"{_gateway_url()}/output/id/{output_id}?expires={until}&sig={sign(output_id, until)}"


def open_output(output_id: str) -> tuple[str, Path | bytes]:
    """(file name, local path or the bytes) of a live output; missing or expired → FileNotFoundError."""
    store = storage.get_storage()
    record = _read_index(output_id, store)
    if record is None or record["expires_at"] <= time.time():
        raise FileNotFoundError(f"output {output_id}")
    if isinstance(store, storage.LocalStorage):
        path = store.local_path(record["key"])
        if not path.is_file():
            raise FileNotFoundError(f"output {output_id}")
        return record["name"], path
    return record["name"], store.read_bytes(record["key"])


def outputs_for_task(task_id: str, expires: int = DEFAULT_EXPIRES) -> list[dict[str, Any]]:
    """The task API's ``outputs``: ``[{"name", "url", "expires_in"}]`` for the task's live outputs."""
    store = storage.get_storage()
    now = time.time()
    found = []
    for info in store.list(f"outputs/{storage.check_key(task_id)}"):
        parts = info.key.split("/")
        if len(parts) != 4:
            continue
        record = _read_index(parts[2], store)
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


_last_cleanup = 0.0
_cleanup_lock = threading.Lock()


def http_response(output_id: str, query_string: bytes | str, now: float | None = None) -> dict[str, Any]:
    """The gateway's answer to ``GET /output/id/{id}?expires=…&sig=…``: ``{"status", "headers", "body"}``.

    Valid → 200 with the file; bad or expired signature → 403; gone → 404. Expired outputs are cleaned
    up here at most once a minute.
    """
    global _last_cleanup
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    query = parse_qs(query_string)
    expires, sig = query.get("expires", [""])[0], query.get("sig", [""])[0]
    with _cleanup_lock:
        due = time.monotonic() - _last_cleanup > 60
        if due:
            _last_cleanup = time.monotonic()
    if due:
        cleanup_expired()
    if not verify(output_id, expires, sig, now=now):
        return _json(403, {"error": "invalid or expired output URL"})
    try:
        name, content = open_output(output_id)
    except FileNotFoundError:
        return _json(404, {"error": "output not found"})
    body = content.read_bytes() if isinstance(content, Path) else content
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = [(b"content-type", content_type.encode()),
               (b"content-disposition", f"inline; filename*=UTF-8''{quote(name)}".encode()),
               (b"content-length", str(len(body)).encode())]
    return {"status": 200, "headers": headers, "body": body}


def _json(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"status": status, "headers": [(b"content-type", b"application/json")], "body": json.dumps(body).encode()}
