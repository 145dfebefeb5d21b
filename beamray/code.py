"""The user's code as a zip archive: shipped to its containers and kept for restores.

Beam syncs the working directory (minus ``.beamignore``); beamray does the same, content-addressed under
``$BEAMRAY_HOME/code/<sha>.zip`` so that a restarted cluster can redeploy from it. Archives are 0600 in a
0700 folder: they are the user's code, secrets it embeds included.

Two ways reach the cluster. ``ship`` makes the archive a Ray ``working_dir`` package, for containers that
have a runtime env anyway (task-queue workers, pods). ``publish`` puts it in Ray's internal KV under its
hash, and the container unpacks it itself (``unpack``, once per node): a Serve replica then has no runtime
env, and Ray starts it as one Python process instead of two (with a runtime env, the raylet first runs
``setup_worker.py``, which imports Ray, then execs the worker, which imports it again: ~0.7-1 s here).
A published archive stays until the last deployment using it is deleted (``unpublish``); Ray's own
packages are dropped once no actor's runtime env names them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from beamray import config, ray_private
from beamray.private_files import write_private

_KV = "beamray"
_KV_PREFIX = "code/"

ALWAYS_IGNORED = (".git", "__pycache__", "*.pyc", ".venv", "venv", ".beamray", "node_modules", ".pytest_cache")
MAX_BYTES = 256 * 2**20


def _ignore_patterns(root: Path) -> list[str]:
    patterns = list(ALWAYS_IGNORED)
    ignore_file = root / ".beamignore"
    if ignore_file.exists():
        patterns += [line.strip().rstrip("/") for line in ignore_file.read_text().splitlines()
                     if line.strip() and not line.startswith("#")]
    return patterns


def _ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    return any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in patterns) or any(
        fnmatch.fnmatch(relative, pattern) for pattern in patterns)


def package(root: str | os.PathLike[str]) -> Path:
    """Zip ``root`` (deterministically) and return the archive's path; identical trees share one archive."""
    root = Path(root).resolve()
    patterns = _ignore_patterns(root)
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for directory, dirnames, filenames in os.walk(root):
            relative_dir = os.path.relpath(directory, root)
            dirnames[:] = sorted(d for d in dirnames
                                 if not _ignored(os.path.normpath(os.path.join(relative_dir, d)), patterns))
            for filename in sorted(filenames):
                relative = os.path.normpath(os.path.join(relative_dir, filename)).replace(os.sep, "/")
                if _ignored(relative, patterns):
                    continue
                path = Path(directory) / filename
                total += path.stat().st_size
                if total > MAX_BYTES:
                    raise ValueError(f"{root} holds more than {MAX_BYTES // 2**20} MiB of files to ship; "
                                     "list large files in .beamignore")
                info = zipfile.ZipInfo(relative, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (path.stat().st_mode & 0o777) << 16
                archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    data = buffer.getvalue()
    target = config.home() / "code" / f"{hashlib.sha256(data).hexdigest()[:32]}.zip"
    if not target.exists():
        write_private(target, data)
    return target


def ship(archive: Path) -> str:
    """Upload ``archive`` into the cluster's GCS (once per content) and return its ``gcs://`` URI.

    Actors (Serve replicas) cannot take a local ``working_dir``; Ray uploads those only for a driver's
    job. The upload is content-addressed, so redeploying unchanged code costs one existence check.
    """
    return ray_private.upload_package(archive)


def publish(archive: Path) -> str:
    """Put ``archive`` into the cluster's KV (once per content); the locator its containers ``unpack``."""
    locator = archive.stem
    ray_private.InternalKV(_KV).put(_KV_PREFIX + locator, archive.read_bytes(), overwrite=False)
    return locator


def unpublish(archive: Path) -> None:
    ray_private.InternalKV(_KV).delete(_KV_PREFIX + archive.stem)


def unpack(locator: str) -> str:
    """The folder holding the published archive ``locator`` on this node, unpacked on first use.

    Content-addressed and shared by the node's containers of that code; unpacked into a temporary
    folder and renamed into place, so concurrent starts never see half a tree. File modes are kept
    (a pod's ``./start.sh``). Under Ray's session folder, which goes with the cluster.
    """
    root = Path(ray_private.session_dir()) / "beamray_code"
    target = root / locator
    if target.is_dir():
        return str(target)
    data = ray_private.InternalKV(_KV).get(_KV_PREFIX + locator)
    if data is None:
        raise FileNotFoundError(f"the code archive {locator} is not on this cluster; deploy it again")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{locator}-", dir=root))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            archive.extract(info, scratch)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(scratch / info.filename, mode)
    try:
        os.rename(scratch, target)
    except OSError:  # another container of this code unpacked it first
        shutil.rmtree(scratch, ignore_errors=True)
    return str(target)


def module_root_and_name(file: str) -> tuple[str, str]:
    """The directory to import from (shipped as the code) and the dotted module name."""
    path, cwd = os.path.abspath(file), os.getcwd()
    root = cwd if path.startswith(cwd + os.sep) else os.path.dirname(path)
    relative = os.path.splitext(os.path.relpath(path, root))[0]
    return root, relative.replace(os.sep, ".")
