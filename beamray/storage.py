"""Where beamray keeps bytes that outlive a task: volumes' files and saved outputs.

``BEAMRAY_STORAGE_URL`` picks the backend (read when asked for, never at import):

- unset, a path or ``file:///path``: a directory, by default ``$BEAMRAY_HOME/storage``. On a cluster of
  several nodes it must be a filesystem every node mounts at the same path (NFS, EFS, Filestore…):
  ``BEAMRAY_STORAGE_URL=/mnt/efs/beamray``.
- ``s3://bucket[/prefix]``: any S3-compatible server through boto3. ``BEAMRAY_S3_ENDPOINT_URL`` (MinIO,
  R2, Ceph, moto…), ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, credentials from boto3's usual chain
  (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, a profile, an instance role),
  ``BEAMRAY_S3_ADDRESSING_STYLE`` (``path`` by default when an endpoint URL is set, else ``auto``).

Layout under the root: ``volumes/{name}/…`` (a volume's files), ``volume-meta/{name}.json``,
``outputs/{task_id}/{output_id}/{name}`` and ``outputs/index/{output_id}.json``.

Every write is whole-object: the local backend writes a temporary file beside the target and renames it
(readers never see half a file; of two writers of one key the last rename wins, neither is torn), and an
S3 PUT is atomic by nature. Local files are 0600, new directories 0700: they hold task results.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator
from urllib.parse import urlparse

from beamray import locations
from beamray.private_files import FILE_MODE, private_dirs, private_opener

TMP_SUFFIX = ".beamray-tmp"


@dataclass(frozen=True)
class ObjectInfo:
    """One stored file: its key relative to the store's root, size, mtime (unix s), and a change tag."""

    key: str
    size: int
    mtime: float
    etag: str


@dataclass(frozen=True)
class Entry:
    """One line of a directory listing (``beamray ls``)."""

    name: str
    is_dir: bool
    size: int
    mtime: float


# ----------------------------------------------------------------------------------------------------
# atomic local writes (also offered to user code writing into a mounted volume)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open ``path`` for writing so that it appears whole or not at all (write-temp-then-rename).

    Concurrent writers of the same file never interleave: each writes its own temporary file and the last
    rename wins. Nothing is written when the block raises.
    """
    if not any(flag in mode for flag in "wax") or "+" in mode or "a" in mode:
        raise ValueError(f"atomic_open writes a new file; mode {mode!r} must be 'w', 'wb', 'x' or 'xb'")
    path = Path(path)
    private_dirs(path.parent)
    tmp = _tmp_name(path)
    exclusive = "x" in mode
    try:
        with open(tmp, mode.replace("x", "w"), opener=private_opener, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)  # fails with FileExistsError, like open(…, "x")
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_open``)."""
    with atomic_open(path, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def atomic_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    with open(source, "rb") as src, atomic_open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def check_key(key: str) -> str:
    """A key is a relative ``/`` path without ``.``/``..`` parts (it must never escape the root)."""
    parts = [part for part in key.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ValueError(f"invalid storage path {key!r}")
    return "/".join(parts)


# ----------------------------------------------------------------------------------------------------
# backends


class LocalStorage:
    """A directory (shared between nodes through NFS/EFS when the cluster has several)."""

    kind = "local"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.url = f"file://{self.root}"

    def local_path(self, key: str) -> Path:
        return self.root / check_key(key)

    def write_bytes(self, key: str, data: bytes) -> ObjectInfo:
        atomic_write(self.local_path(key), data)
        return self.stat(key)  # type: ignore[return-value]

    def upload(self, key: str, source: str | os.PathLike[str]) -> ObjectInfo:
        atomic_copy(source, self.local_path(key))
        return self.stat(key)  # type: ignore[return-value]

    def download(self, key: str, target: str | os.PathLike[str]) -> None:
        path = self.local_path(key)
        if not path.is_file():
            raise FileNotFoundError(f"{self.url}/{key}")
        atomic_copy(path, target)

    def read_bytes(self, key: str) -> bytes:
        return self.local_path(key).read_bytes()

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self.local_path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not os.path.isfile(self.local_path(key)):
            return None
        return ObjectInfo(check_key(key), st.st_size, st.st_mtime, f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}")

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def is_dir(self, key: str) -> bool:
        return self.local_path(key).is_dir()

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every file under ``prefix`` (a directory key), recursively, temporary files left out."""
        base = self.local_path(prefix)
        found = []
        for path in sorted(base.rglob("*")) if base.is_dir() else []:
            if path.name.endswith(TMP_SUFFIX) or not path.is_file():
                continue
            st = path.stat()
            key = path.relative_to(self.root).as_posix()
            found.append(ObjectInfo(key, st.st_size, st.st_mtime, f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}"))
        return found

    def list_dir(self, prefix: str) -> list[Entry]:
        base = self.local_path(prefix)
        entries = []
        for path in sorted(base.iterdir()) if base.is_dir() else []:
            if path.name.endswith(TMP_SUFFIX):
                continue
            st = path.stat()
            entries.append(Entry(path.name, path.is_dir(), 0 if path.is_dir() else st.st_size, st.st_mtime))
        return entries

    def delete(self, key: str) -> bool:
        try:
            self.local_path(key).unlink()
            return True
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False

    def delete_prefix(self, prefix: str) -> int:
        base = self.local_path(prefix)
        if not base.is_dir():
            return int(self.delete(prefix))
        count = sum(1 for path in base.rglob("*") if path.is_file())
        shutil.rmtree(base)
        return count

    def makedirs(self, key: str) -> None:
        private_dirs(self.local_path(key))


class S3Storage:
    """A bucket (and optional key prefix) of any S3-compatible server."""

    kind = "s3"

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client if client is not None else s3_client()
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _dir(self, prefix: str) -> str:
        prefix = prefix.strip("/")
        full = "/".join(part for part in (self.prefix, prefix) if part)
        return f"{full}/" if full else ""

    def _relative(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1:] if self.prefix else full_key

    def write_bytes(self, key: str, data: bytes) -> ObjectInfo:
        response = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        return ObjectInfo(check_key(key), len(data), time.time(), response["ETag"].strip('"'))

    def upload(self, key: str, source: str | os.PathLike[str]) -> ObjectInfo:
        size = os.path.getsize(source)
        if size <= 64 * 2**20:  # one PUT: atomic, and its ETag comes back
            with open(source, "rb") as handle:
                response = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=handle)
            return ObjectInfo(check_key(key), size, time.time(), response["ETag"].strip('"'))
        self.client.upload_file(str(source), self.bucket, self._key(key))  # multipart: atomic on completion
        return self.stat(key)  # type: ignore[return-value]

    def download(self, key: str, target: str | os.PathLike[str]) -> None:
        target = Path(target)
        private_dirs(target.parent)
        tmp = _tmp_name(target)
        try:
            self.client.download_file(self.bucket, self._key(key), str(tmp))
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, target)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if _is_missing(exc):
                raise FileNotFoundError(f"{self.url}/{key}") from exc
            raise

    def read_bytes(self, key: str) -> bytes:
        stream, _ = self.open_stream(key)
        with contextlib.closing(stream):
            return stream.read()

    def open_stream(self, key: str) -> tuple[IO[bytes], int]:
        """The object's body as a stream to read in pieces, and its size."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if _is_missing(exc):
                raise FileNotFoundError(f"{self.url}/{key}") from exc
            raise
        return response["Body"], int(response["ContentLength"])

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise
        return ObjectInfo(check_key(key), head["ContentLength"], head["LastModified"].timestamp(),
                          head["ETag"].strip('"'))

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def is_dir(self, key: str) -> bool:
        response = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._dir(key), MaxKeys=1)
        return response.get("KeyCount", 0) > 0

    def list(self, prefix: str) -> list[ObjectInfo]:
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._dir(prefix)):
            for item in page.get("Contents", []):
                if item["Key"].endswith("/"):  # a "folder" marker made by some consoles
                    continue
                found.append(ObjectInfo(self._relative(item["Key"]), item["Size"],
                                        item["LastModified"].timestamp(), item["ETag"].strip('"')))
        return found

    def list_dir(self, prefix: str) -> list[Entry]:
        entries = []
        paginator = self.client.get_paginator("list_objects_v2")
        base = self._dir(prefix)
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                entries.append(Entry(common["Prefix"][len(base):].rstrip("/"), True, 0, 0.0))
            for item in page.get("Contents", []):
                name = item["Key"][len(base):]
                if name:
                    entries.append(Entry(name, False, item["Size"], item["LastModified"].timestamp()))
        return sorted(entries, key=lambda entry: entry.name)

    def delete(self, key: str) -> bool:
        if not self.exists(key):
            return False
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        return True

    def delete_prefix(self, prefix: str) -> int:
        keys = [info.key for info in self.list(prefix)]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(key)} for key in keys[start:start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        if not keys:
            return int(self.delete(prefix)) if prefix.strip("/") else 0
        return len(keys)

    def makedirs(self, key: str) -> None:
        """S3 has no directories; a volume exists through its metadata record."""

    def presigned_url(self, key: str, expires: int, filename: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires))


def _is_missing(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


Storage = LocalStorage | S3Storage


def s3_client(*, endpoint_url: str | None = None, region: str | None = None, access_key: str | None = None,
              secret_key: str | None = None, session_token: str | None = None,
              force_path_style: bool | None = None, storage_env: bool = True) -> Any:
    """A boto3 S3 client; unset arguments come from ``AWS_*`` and boto3's chain, and with ``storage_env``
    also from ``BEAMRAY_S3_ENDPOINT_URL`` / ``BEAMRAY_S3_ADDRESSING_STYLE`` (beamray's own storage)."""
    import boto3
    from botocore.config import Config

    if storage_env:
        endpoint_url = endpoint_url or os.environ.get("BEAMRAY_S3_ENDPOINT_URL") or None
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    if force_path_style is None:
        style = (storage_env and os.environ.get("BEAMRAY_S3_ADDRESSING_STYLE")) or ("path" if endpoint_url else "auto")
    else:
        style = "path" if force_path_style else "auto"
    credentials: dict[str, Any] = {}
    if access_key or secret_key:
        credentials = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key,
                       "aws_session_token": session_token}
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region,
                          config=Config(s3={"addressing_style": style}, signature_version="s3v4",
                                        retries={"max_attempts": 5, "mode": "standard"}),
                          **credentials)


_cache: dict[tuple[str, ...], Storage] = {}


def get_storage() -> Storage:
    """The backend ``BEAMRAY_STORAGE_URL`` names (one client per URL and endpoint, per process)."""
    url = locations.storage_url()
    cache_key = (url, os.environ.get("BEAMRAY_S3_ENDPOINT_URL", ""), os.environ.get("AWS_ACCESS_KEY_ID", ""))
    if cache_key not in _cache:
        _cache[cache_key] = open_storage(url)
    return _cache[cache_key]


def open_storage(url: str) -> Storage:
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"BEAMRAY_STORAGE_URL {url!r} names no bucket; use s3://BUCKET[/PREFIX]")
        return S3Storage(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        return LocalStorage(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # "C:" style drive letters are not schemes
        raise ValueError(f"BEAMRAY_STORAGE_URL {url!r}: use a directory, file:///dir or s3://bucket/prefix")
    return LocalStorage(url)


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def local_path_under(root: str | os.PathLike[str], key: str) -> Path:
    """Where object key ``key`` lives below the local folder ``root``.

    ``check_key`` keeps keys inside the root; an object key must also be a plain path, because object
    stores accept ``/x``, ``a//b`` and ``a/`` beside ``x`` and ``a/b``, which would share one local file.
    """
    try:
        plain = "\0" not in key and "" not in key.split("/") and check_key(key) == key
    except ValueError:  # check_key's own refusal: a '.' or '..' part
        plain = False
    if not plain:
        raise ValueError(f"storage key {key!r} has an empty, '.' or '..' part, so it cannot be a local file; "
                         "rename the object to a plain relative path")
    return Path(root) / key
