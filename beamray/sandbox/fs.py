"""A sandbox's files, as the actor reaches them: ``/workspace/…`` paths mapped onto its folder on the node.

Only ``/workspace`` is reachable through ``sb.fs``: it is the sandbox's one writable place, and the rest of
its root is the node's own read-only system folders. A path is normalised (``..`` folded) and must stay
under ``/workspace``; the node path it maps to is resolved (symlinks the sandbox made included) and must
stay inside the sandbox's folder, so a link to ``/etc/shadow`` is refused rather than followed.

Beam's ``mode`` (default ``420`` = ``0o644``) is permission bits, as ``os.chmod`` takes them: pass
``0o755``, not ``755`` (which is ``0o1363``).
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat as stat_module
import time
from typing import Any

from beamray.sandbox.errors import SandboxFileSystemError
from beamray.sandbox.isolation import WORKSPACE, give_to_sandbox_user

_MAX_SEARCH_BYTES = 8 << 20


class Files:
    """File operations on one sandbox's workspace folder."""

    def __init__(self, root: str, container_id: str) -> None:
        self.root = os.path.realpath(root)
        self.container_id = container_id

    def _error(self, operation: str, path: str, message: str) -> SandboxFileSystemError:
        return SandboxFileSystemError(message, operation, path, self.container_id)

    def host(self, operation: str, path: Any) -> str:
        """The node path of sandbox ``path``; refuses anything outside ``/workspace``."""
        if not isinstance(path, str) or not path or "\x00" in path:
            raise self._error(operation, str(path), "the path must be a non-empty string")
        absolute = posixpath.normpath(posixpath.join(WORKSPACE, path))
        if absolute != WORKSPACE and not absolute.startswith(WORKSPACE + "/"):
            raise self._error(operation, path, f"only paths under {WORKSPACE} can be reached (it is the "
                                               "sandbox's one writable folder); this one resolves to " + absolute)
        target = os.path.join(self.root, posixpath.relpath(absolute, WORKSPACE))
        resolved = os.path.realpath(target)
        if resolved != self.root and not resolved.startswith(self.root + os.sep):
            raise self._error(operation, path, "the path leads out of the workspace through a symbolic link")
        return resolved

    def write_bytes(self, path: str, data: bytes, mode: int) -> None:
        if not isinstance(data, (bytes, bytearray)):
            raise self._error("write", path, f"data must be bytes, got {type(data).__name__}")
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise self._error("write", path, f"mode must be permission bits like 0o644, got {mode!r}")
        target = self.host("write", path)
        if os.path.isdir(target):
            raise self._error("write", path, "is a directory")
        self._make_parents(os.path.dirname(target))
        with open(target, "wb") as handle:
            handle.write(data)
        os.chmod(target, mode)
        give_to_sandbox_user(target)

    def _make_parents(self, folder: str) -> None:
        missing = []
        while not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        for created in reversed(missing):
            os.mkdir(created)
            give_to_sandbox_user(created)

    def read_bytes(self, path: str) -> bytes:
        target = self.host("read", path)
        if not os.path.isfile(target):
            raise self._error("read", path, "no such file" if not os.path.exists(target) else "not a file")
        with open(target, "rb") as handle:
            return handle.read()

    def stat(self, path: str) -> dict[str, Any]:
        target = self.host("stat", path)
        return self._info(target, posixpath.basename(path.rstrip("/")) or "/", "stat", path)

    def _info(self, target: str, name: str, operation: str, path: str) -> dict[str, Any]:
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            raise self._error(operation, path, "no such file or directory") from None
        owner = "sandbox" if info.st_uid in (65534, os.geteuid()) else str(info.st_uid)
        return {"name": name, "is_dir": stat_module.S_ISDIR(info.st_mode), "size": info.st_size,
                "mode": info.st_mode, "mod_time": int(info.st_mtime), "permissions": stat_module.S_IMODE(info.st_mode),
                "owner": owner, "group": owner}

    def list(self, path: str) -> list[dict[str, Any]]:
        target = self.host("list", path)
        if not os.path.isdir(target):
            raise self._error("list", path, "not a directory")
        return [self._info(os.path.join(target, name), name, "list", path) for name in sorted(os.listdir(target))]

    def create_directory(self, path: str) -> None:
        target = self.host("mkdir", path)
        if os.path.exists(target) and not os.path.isdir(target):
            raise self._error("mkdir", path, "a file of that name exists")
        self._make_parents(target)

    def delete(self, path: str, kind: str) -> None:
        """``kind``: ``"file"``, ``"directory"`` or ``"any"`` (Beam's ``remove``)."""
        target = self.host("delete", path)
        if target == self.root:
            raise self._error("delete", path, f"{WORKSPACE} itself cannot be deleted")
        if not os.path.lexists(target):
            raise self._error("delete", path, "no such file or directory")
        is_dir = os.path.isdir(target) and not os.path.islink(target)
        if kind == "file" and is_dir:
            raise self._error("delete", path, "is a directory (use delete_directory or remove)")
        if kind == "directory" and not is_dir:
            raise self._error("delete", path, "not a directory (use delete_file or remove)")
        shutil.rmtree(target) if is_dir else os.unlink(target)

    def _text_files(self, path: str, operation: str):
        target = self.host(operation, path)
        if os.path.isfile(target):
            yield target
            return
        if not os.path.isdir(target):
            raise self._error(operation, path, "no such file or directory")
        for folder, _, names in os.walk(target):
            for name in sorted(names):
                candidate = os.path.join(folder, name)
                if not os.path.islink(candidate) and os.path.getsize(candidate) <= _MAX_SEARCH_BYTES:
                    yield candidate

    def _sandbox_path(self, target: str) -> str:
        relative = os.path.relpath(target, self.root)
        return WORKSPACE if relative == "." else f"{WORKSPACE}/{relative}"

    def find(self, path: str, pattern: str) -> list[dict[str, Any]]:
        """Every match of regular expression ``pattern``: 1-based lines, 0-based columns, as Beam's ranges."""
        try:
            regex = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise self._error("find", path, f"invalid pattern {pattern!r}: {exc}") from None
        results = []
        for target in self._text_files(path, "find"):
            matches = []
            for number, line in enumerate((_text(target) or "").splitlines(), start=1):
                for found in regex.finditer(line):
                    matches.append({"range": {"start": {"line": number, "column": found.start()},
                                              "end": {"line": number, "column": found.end()}},
                                    "content": line})
            if matches:
                results.append({"path": self._sandbox_path(target), "matches": matches})
        return results

    def replace(self, path: str, old: str, new: str, regex: bool) -> int:
        """Replace in every text file under ``path``; returns how many files changed."""
        if not isinstance(old, str) or not old or not isinstance(new, str):
            raise self._error("replace", path, "old_string must be a non-empty string and new_string a string")
        changed = 0
        for target in self._text_files(path, "replace"):
            text = _text(target)
            if text is None:
                continue
            updated = re.sub(old, new, text) if regex else text.replace(old, new)
            if updated != text:
                with open(target, "w", encoding="utf-8") as handle:
                    handle.write(updated)
                changed += 1
        return changed

    def wait_for(self, path: str, timeout: float, size: int | None) -> bool:
        """True once ``path`` exists (and holds at least ``size`` bytes), False after ``timeout`` seconds."""
        target = self.host("wait_for", path)
        deadline = time.monotonic() + (timeout if timeout is not None else 60)
        while True:
            if os.path.exists(target) and (size is None or os.path.getsize(target) >= size):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def _text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (UnicodeDecodeError, OSError):
        return None
