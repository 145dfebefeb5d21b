"""Volumes and cloud buckets inside a task or replica: each appears at its ``mount_path`` and ``/volumes/{name}``.

Both places are symlinks (created or re-pointed atomically; an empty directory there is replaced, anything
else is an error), to a directory chosen by the backend:

- **Volume, local storage** (a directory, shared by NFS/EFS between nodes): the volume's own directory
  in the storage. Every task sees every other task's writes at once, with POSIX semantics: files written
  by different tasks never interfere; two tasks writing the *same* file with plain ``open(…, "w")``
  can interleave, so write shared files with ``beamray.storage.atomic_write`` / ``atomic_open``
  (temp file + rename: readers see the old or the new file whole, the last writer wins).
- **Volume, S3 storage**, and **CloudBucket** (s3fs-fuse is not available): a per-node mirror under
  ``$BEAMRAY_HOME/mounts/``, shared by the tasks of that node. Mounting *syncs down* (objects whose
  ETag changed are downloaded, each atomically; files changed locally and not yet uploaded are kept);
  the end of a task *syncs up* (every file whose size/mtime/inode changed since it was last synced is
  PUT whole, which S3 makes atomic; files deleted locally are deleted remotely only when the remote
  object is still the version this node saw). Consistency is therefore close-to-open at task
  granularity: another node sees a task's writes after that task ended (replicas: after ``on_start``,
  every ``BEAMRAY_VOLUME_SYNC_INTERVAL`` seconds (default 60) and at shutdown), never half a file.
  Different files written concurrently all survive; one file written by several nodes ends as one
  whole version, the last upload (a warning names it when this node's copy replaced a newer remote one).
  A mirror keeps its files between tasks, so a second mount only downloads what changed.
- **read_only** cloud buckets: the mirror is made equal to the bucket at each mount (local changes are
  discarded), files are mode 0444 and directories 0555, and nothing is ever uploaded; changes made anyway
  (root ignores modes) are reported in a warning when the task ends.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

from beamray import config, private_files, storage, volumes
from beamray.exceptions import BeamrayError

logger = logging.getLogger(__name__)

DEFAULT_VOLUMES_ROOT = "/volumes"


class MountError(BeamrayError, RuntimeError):
    """A volume cannot be made to appear where the program asked for it."""


def volumes_root() -> Path:
    """``BEAMRAY_VOLUMES_ROOT`` (default ``/volumes``), else ``$BEAMRAY_HOME/volumes`` when not writable."""
    wanted = Path(os.environ.get("BEAMRAY_VOLUMES_ROOT") or DEFAULT_VOLUMES_ROOT)
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        if os.access(wanted, os.W_OK | os.X_OK):
            return wanted
    except OSError:
        pass
    return private_files.private_dirs(config.home() / "volumes")


def link(target: Path, at: Path) -> None:
    """Make ``at`` a symlink to ``target``; an existing symlink is re-pointed atomically."""
    at.parent.mkdir(parents=True, exist_ok=True)
    if at.is_symlink():
        if os.readlink(at) == str(target):
            return
    elif at.is_dir():
        try:
            at.rmdir()
        except OSError as exc:
            raise MountError(f"cannot mount at {at}: a non-empty directory is there; move it away or pick "
                             "another mount_path") from exc
    elif at.exists():
        raise MountError(f"cannot mount at {at}: a file is there; pick another mount_path")
    tmp = at.with_name(f".{at.name}.{os.getpid()}.{os.urandom(4).hex()}.link")
    os.symlink(target, tmp)
    os.replace(tmp, at)


def _resolve_mount_path(mount_path: str, cwd: Path) -> Path:
    path = Path(os.path.expanduser(mount_path))
    return path if path.is_absolute() else cwd / path


# ----------------------------------------------------------------------------------------------------
# the per-node mirror of an S3 location


def _signature(path: Path) -> list[int] | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino] if stat.S_ISREG(st.st_mode) else None


class Mirror:
    """A local directory kept in step with an S3 location (see the module docstring)."""

    def __init__(self, store: storage.S3Storage, cache: Path, read_only: bool = False) -> None:
        self.store = store
        self.read_only = read_only
        self.cache = cache
        self.data = cache / "data"
        self._manifest_path = cache / "manifest.json"
        private_files.private_dirs(self.data)  # a node's copy of the bucket: for its owner only

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        """The manifest (key → etag and the local file's signature when synced), under the node's lock."""
        with open(self.cache / "lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    manifest = json.loads(self._manifest_path.read_text())
                except (FileNotFoundError, ValueError):
                    manifest = {}
                # a mirror synced before keys were checked may list some that are no local file
                manifest = {key: entry for key, entry in manifest.items()
                            if self._local(key, quiet=True) is not None}
                yield manifest
                storage.atomic_write(self._manifest_path, json.dumps(manifest))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _local(self, key: str, quiet: bool = False) -> Path | None:
        """The mirror's file for ``key``; None (logged) for a key that would land outside it."""
        try:
            return storage.local_path_under(self.data, key)
        except ValueError as exc:
            if not quiet:
                logger.warning("%s: skipping an object: %s", self.store.url, exc)
            return None

    def local_files(self) -> dict[str, Path]:
        found = {}
        for root, _dirs, files in os.walk(self.data):
            for name in files:
                path = Path(root) / name
                if name.endswith(storage.TMP_SUFFIX) or path.is_symlink() or not path.is_file():
                    continue
                found[path.relative_to(self.data).as_posix()] = path
        return found

    def pull(self) -> int:
        """Sync down; returns how many files were downloaded."""
        with self._locked() as manifest:
            if not self.read_only:
                return self._pull(manifest)
            _set_modes(self.data, writable=True)
            try:
                return self._pull(manifest)
            finally:
                _set_modes(self.data, writable=False)

    def _pull(self, manifest: dict[str, dict[str, Any]]) -> int:
        downloaded = 0
        remote = {info.key: info for info in self.store.list("")}
        for key, info in remote.items():
            path = self._local(key)
            if path is None:
                continue
            entry = manifest.get(key)
            local = _signature(path)
            if entry and entry["etag"] == info.etag and local == entry["local"]:
                continue
            if entry and entry["etag"] == info.etag and local is None and not self.read_only:
                continue  # deleted on this node, not yet pushed
            dirty = local is not None and (entry is None or local != entry["local"])
            if dirty and not self.read_only:
                continue  # a change of this node not yet uploaded; the next push decides
            try:
                self.store.download(key, path)
            except (OSError, ValueError) as exc:  # e.g. "a" and "a/b" both exist as objects
                logger.warning("%s: cannot download %r (%s)", self.store.url, key, exc)
                continue
            manifest[key] = {"etag": info.etag, "local": _signature(path)}
            downloaded += 1
        for key in [key for key in manifest if key not in remote]:
            entry = manifest.pop(key)
            path = storage.local_path_under(self.data, key)  # the manifest holds only usable keys
            if self.read_only or _signature(path) == entry["local"]:
                path.unlink(missing_ok=True)  # deleted remotely, unchanged here
        if self.read_only:  # the bucket's view exactly: local additions go too
            for key, path in self.local_files().items():
                if key not in manifest:
                    path.unlink()
        return downloaded

    def dirty(self) -> list[str]:
        """Keys changed or deleted on this node since they were last synced."""
        with self._locked() as manifest:
            changed, deleted = self._dirty(manifest)
            return sorted(changed + deleted)

    def _dirty(self, manifest: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
        files = self.local_files()
        changed = [key for key, path in files.items()
                   if key not in manifest or _signature(path) != manifest[key]["local"]]
        return changed, [key for key in manifest if key not in files]

    def push(self) -> int:
        """Sync up; returns how many files were uploaded or deleted remotely (read-only: none)."""
        with self._locked() as manifest:
            changed, deleted = self._dirty(manifest)
            if self.read_only:
                if changed or deleted:
                    logger.warning("%s is read_only: %d local change(s) were not uploaded (%s)", self.store.url,
                                   len(changed) + len(deleted), ", ".join(sorted(changed + deleted)[:5]))
                return 0
            for key in changed:
                path = self.data / key
                before = _signature(path)
                if before is None:
                    continue
                entry = manifest.get(key)
                remote = self.store.stat(key)
                if remote is not None and (entry is None or remote.etag != entry["etag"]):
                    logger.warning("%s: %s was also changed elsewhere; this node's version replaces it "
                                   "(last writer wins)", self.store.url, key)
                info = self.store.upload(key, path)
                manifest[key] = {"etag": info.etag, "local": before}  # changed during upload → pushed again
            for key in deleted:
                entry = manifest.pop(key)
                remote = self.store.stat(key)
                if remote is not None and remote.etag == entry["etag"]:
                    self.store.delete(key)
            return len(changed) + len(deleted)


def _set_modes(root: Path, writable: bool) -> None:
    for directory, dirs, files in os.walk(root):
        os.chmod(directory, 0o755 if writable else 0o555)
        for name in files:
            path = Path(directory) / name
            if not path.is_symlink():
                os.chmod(path, 0o644 if writable else 0o444)


def mirror_cache(kind: str, url: str, name: str, read_only: bool) -> Path:
    tag = storage.short_hash(kind, url, str(read_only))
    return Path(os.environ.get("BEAMRAY_MOUNT_CACHE") or config.home() / "mounts") / f"{name}-{tag}"


# ----------------------------------------------------------------------------------------------------
# mounting


class Mount:
    """One volume made visible: where its files are (``target``) and the links pointing there."""

    def __init__(self, volume: Any, target: Path, mirror: Mirror | None, links: list[Path]) -> None:
        self.volume, self.target, self.mirror, self.links = volume, target, mirror, links

    def sync(self) -> int:
        return self.mirror.push() if self.mirror is not None else 0


def _is_bucket(volume: Any) -> bool:
    """A ``CloudBucket`` opens its own S3 bucket (``store()``); a ``Volume`` lives in beamray's storage."""
    return callable(getattr(volume, "store", None))


def _target(volume: Any) -> tuple[Path, Mirror | None]:
    if _is_bucket(volume):
        store = volume.store()
        cache = mirror_cache("bucket", f"{volume.config.endpoint}|{volume.name}", volume.name, volume.config.read_only)
        mirror = Mirror(store, cache, read_only=volume.config.read_only)
        mirror.pull()
        return mirror.data, mirror
    volume.get_or_create()
    backend = storage.get_storage()
    prefix = volumes.data_prefix(volume.name)
    if isinstance(backend, storage.LocalStorage):
        target = backend.local_path(prefix)
        target.mkdir(parents=True, exist_ok=True)
        return target, None
    sub = storage.S3Storage(backend.bucket, f"{backend.prefix}/{prefix}".strip("/"), client=backend.client)
    mirror = Mirror(sub, mirror_cache("volume", backend.url, volume.name, False))
    mirror.pull()
    return mirror.data, mirror


def mount_one(volume: Any, cwd: Path | None = None) -> Mount:
    if not hasattr(volume, "name") or not hasattr(volume, "mount_path"):
        raise TypeError(f"volumes=[…] takes Volume and CloudBucket objects, got {volume!r}")
    if not _is_bucket(volume):
        volumes.validate_volume_name(volume.name)
    target, mirror = _target(volume)
    links = []
    for place in (volumes_root() / volume.name, _resolve_mount_path(volume.mount_path, cwd or Path.cwd())):
        if place.resolve() == target.resolve() and not place.is_symlink():
            continue  # the mount path is the storage directory itself
        if place not in links:
            link(target, place)
            links.append(place)
    return Mount(volume, target, mirror, links)


class MountSet:
    """The mounts of one task or replica; ``sync()`` uploads mirrors' changes, ``close()`` syncs a last time."""

    def __init__(self, mounts: list[Mount]) -> None:
        self.mounts = mounts
        self._closed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def sync(self) -> int:
        with self._lock:
            return sum(mount.sync() for mount in self.mounts)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        errors = []
        for mount in self.mounts:
            try:
                with self._lock:
                    mount.sync()
            except Exception as exc:  # every mount gets its chance to sync before the error is raised
                errors.append(exc)
        if errors:
            raise errors[0]

    def start_periodic_sync(self, interval: float) -> None:
        if interval <= 0 or not any(m.mirror is not None and not m.mirror.read_only for m in self.mounts):
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.sync()
                except Exception:
                    logger.exception("periodic volume sync failed")

        threading.Thread(target=loop, name="beamray-volume-sync", daemon=True).start()

    def __enter__(self) -> MountSet:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def mount_all(volumes: Iterable[Any], cwd: Path | None = None) -> MountSet:
    return MountSet([mount_one(volume, cwd) for volume in volumes or ()])


@contextlib.contextmanager
def task_mounts(volumes: Iterable[Any]) -> Iterator[MountSet]:
    """Around one task: mount (sync down) before, sync up after, also when the handler raised."""
    mounts = mount_all(volumes)
    try:
        yield mounts
    finally:
        mounts.close()


def process_mounts(volumes: Iterable[Any]) -> MountSet:
    """For a replica (a long-lived process): mount now, sync periodically and when the process exits."""
    mounts = mount_all(volumes)
    mounts.start_periodic_sync(float(os.environ.get("BEAMRAY_VOLUME_SYNC_INTERVAL", "60")))
    atexit.register(_close_quietly, mounts)
    return mounts


def _close_quietly(mounts: MountSet) -> None:
    try:
        mounts.close()
    except Exception:
        logger.exception("volume sync at exit failed")
