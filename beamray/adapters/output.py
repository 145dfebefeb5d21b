"""Beam's ``Output``: a file or directory a task keeps after it ends, with an expiring public URL.

``save()`` stores the file (a directory is zipped first) through ``beamray.outputs``, which keeps it,
signs its URLs and serves them on the gateway.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Union

from beamray import outputs, storage
from beamray.outputs import OutputNotFoundError

_gateway_seen: list[bool] = []  # this process has made sure the gateway runs


class OutputCannotRunLocallyError(Exception):
    """``Output`` used outside a task (``CONTAINER_ID`` unset)."""


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
            output_id = outputs.store_output(self.task_id, source)
        except (OSError, ValueError) as exc:
            raise OutputSaveError(f"saving {self.path} failed: {exc}") from exc
        except Exception as exc:  # botocore errors
            raise OutputSaveError(f"saving {self.path} failed: {exc}") from exc
        self.id = output_id
        return self

    def stat(self) -> Stat:
        if not self.id:
            raise OutputNotSavedError("Save the output first (output.save()).")
        record = outputs.read_index(self.id)
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

    def public_url(self, expires: int = outputs.DEFAULT_EXPIRES) -> str:
        """A URL anyone can GET until ``expires`` seconds from now; the file is kept at least that long."""
        if not self.id:
            raise OutputNotSavedError("Save the output first (output.save()).")
        try:
            url = outputs.public_url(self.id, expires)
            if outputs.served_by_gateway() and not _gateway_seen:
                from beamray import deploy  # Serve is loaded only for links the gateway answers

                deploy.ensure_serve()  # a script's link must answer on a cluster where nothing is deployed
                _gateway_seen.append(True)  # once per process: a .map saving outputs asks Serve once
            return url
        except (OutputNotFoundError, ValueError) as exc:
            raise OutputPublicURLError(str(exc)) from exc
        except Exception as exc:
            raise OutputPublicURLError(f"no public URL for output {self.id}: {exc}") from exc

    def __repr__(self) -> str:
        return f"Output(path={str(self.path)!r}, id={self.id!r})"


