"""``SandboxInstance.fs``: Beam's file-system calls on a sandbox, and the records they return.

Paths reach ``/workspace`` only (relative ones are under it); ``mode`` is permission bits (the SDK's
default 420 is ``0o644``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional


@dataclass
class SandboxFileInfo:
    name: str
    is_dir: bool
    size: int
    mode: int
    mod_time: int
    permissions: int
    owner: str
    group: str


@dataclass
class SandboxFilePosition:
    line: int
    column: int


@dataclass
class SandboxFileSearchRange:
    start: SandboxFilePosition
    end: SandboxFilePosition


@dataclass
class SandboxFileSearchMatch:
    range: SandboxFileSearchRange
    content: str


@dataclass
class SandboxFileSearchResult:
    path: str
    matches: List[SandboxFileSearchMatch]


def _search_result(found: Dict[str, Any]) -> SandboxFileSearchResult:
    return SandboxFileSearchResult(found["path"], [SandboxFileSearchMatch(SandboxFileSearchRange(
        SandboxFilePosition(**m["range"]["start"]), SandboxFilePosition(**m["range"]["end"])), m["content"])
        for m in found["matches"]])


class SandboxFileSystem:
    """``sb.fs``: files under ``/workspace``."""

    def __init__(self, sandbox_instance: Any) -> None:  # a SandboxInstance
        self.sandbox_instance = sandbox_instance

    def _fs(self, operation: str, *args: Any) -> Any:
        return self.sandbox_instance._call("fs", operation, *args)

    def upload_file(self, local_path: str, sandbox_path: str) -> None:
        with open(local_path, "rb") as handle:
            self.write_bytes(sandbox_path, handle.read())

    def download_file(self, sandbox_path: str, local_path: str) -> None:
        data = self.read_bytes(sandbox_path)
        with open(local_path, "wb") as handle:
            handle.write(data)

    def write_bytes(self, sandbox_path: str, data: bytes, mode: int = 0o644) -> None:
        self._fs("write_bytes", sandbox_path, bytes(data) if isinstance(data, bytearray) else data, mode)

    def write_text(self, sandbox_path: str, text: str, encoding: str = "utf-8", mode: int = 0o644) -> None:
        self.write_bytes(sandbox_path, text.encode(encoding), mode)

    def read_bytes(self, sandbox_path: str) -> bytes:
        return self._fs("read_bytes", sandbox_path)

    def read_text(self, sandbox_path: str, encoding: str = "utf-8") -> str:
        return self.read_bytes(sandbox_path).decode(encoding)

    def stat_file(self, sandbox_path: str) -> SandboxFileInfo:
        return SandboxFileInfo(**self._fs("stat", sandbox_path))

    def list_files(self, sandbox_path: str) -> List[SandboxFileInfo]:
        return [SandboxFileInfo(**info) for info in self._fs("list", sandbox_path)]

    def create_directory(self, sandbox_path: str) -> None:
        self._fs("create_directory", sandbox_path)

    def delete_directory(self, sandbox_path: str) -> None:
        self._fs("delete", sandbox_path, "directory")

    def delete_file(self, sandbox_path: str) -> None:
        self._fs("delete", sandbox_path, "file")

    def remove(self, sandbox_path: str) -> None:
        self._fs("delete", sandbox_path, "any")

    def find_in_files(self, sandbox_path: str, pattern: str) -> List[SandboxFileSearchResult]:
        return [_search_result(found) for found in self._fs("find", sandbox_path, pattern)]

    def replace_in_files(self, sandbox_path: str, old_string: str, new_string: str, regex: bool = False) -> None:
        self._fs("replace", sandbox_path, old_string, new_string, regex)

    def wait_for(self, sandbox_path: str, timeout: float = 60, size: Optional[int] = None) -> bool:
        return self._fs("wait_for", sandbox_path, timeout, size)
