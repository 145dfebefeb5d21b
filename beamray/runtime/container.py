"""One Beam container: a deployment's own shipped code, loaded in isolation.

Serve replicas, task-queue workers and function tasks load the user's code through here, so each
imports exactly the files of its own deployment, as a Beam container does:

- ``beam`` / ``beta9`` resolve to beamray (programs are written ``from beam import …``);
- the deployment's code directory comes first on ``sys.path`` and is the process's working directory,
  and the handler's own folder comes next (``sub/app.py`` deployed from a parent folder). A Serve replica
  is handed its code as ``ContainerCode`` (a published archive, ``code.unpack``ed here, and its settings),
  so that Ray starts it without a runtime env; other containers get it as their ``working_dir``;
- folders that another driver put on the path are removed: Ray adds the cwd of the driver that created
  a job to every worker of that job, and the Serve controller and the task service belong to whichever
  driver started them first, so without this a project's ``app.py`` would import another project's.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import cloudpickle

from beamray import code, drop_in, ray_private
from beamray.context import FunctionContext


@dataclass(frozen=True)
class ContainerCode:
    """What a container without a runtime env enters before importing user code: the published archive of
    its deployment's code (``code.publish``) and the settings a runtime env would have set."""

    locator: str
    env: dict[str, str] = field(default_factory=dict)


_entered: list[tuple[ContainerCode, str]] = []  # the code this process runs in, and its folder


def isolate_imports(code_dir: str, handler: str) -> None:
    """Make ``code_dir`` (and the handler's package folder in it) the only user folders on the path."""
    package = handler.partition(":")[0].rpartition(".")[0]
    own = [code_dir] + ([os.path.join(code_dir, *package.split("."))] if package else [])
    foreign = {os.path.realpath(path) for path in ray_private.job_driver_paths()} - {os.path.realpath(code_dir)}
    kept = [path for path in sys.path if path not in own and os.path.realpath(path or ".") not in foreign]
    sys.path[:] = own + kept


def _shipped_code_dir() -> str | None:
    """The deployment's code: the working directory when this worker runs with a ``working_dir``."""
    try:
        import ray

        return os.getcwd() if ray.get_runtime_context().runtime_env.get("working_dir") else None
    except Exception:  # not in a Ray worker
        return None


def entered_code() -> ContainerCode | None:
    """The code this process entered (a replica's), which the function tasks it calls enter too."""
    return _entered[-1][0] if _entered else None


def _enter(container_code: ContainerCode) -> str:
    """Settings, working directory and a clean slate of user modules for ``container_code``'s folder.

    A process can enter another deployment's code: function tasks called by replicas share Ray's workers,
    so the modules imported from the previous deployment's folder are forgotten first.
    """
    os.environ.update(container_code.env)
    code_dir = code.unpack(container_code.locator)
    if _entered and _entered[-1][1] != code_dir:
        previous = _entered[-1][1] + os.sep
        for name, module in list(sys.modules.items()):
            if (getattr(module, "__file__", None) or "").startswith(previous):
                del sys.modules[name]
    os.chdir(code_dir)
    _entered[:] = [(container_code, code_dir)]
    return code_dir


def enter_code(container_code: ContainerCode | None) -> str:
    """The container's code folder: ``container_code`` entered when given, else its ``working_dir``."""
    return _enter(container_code) if container_code is not None else os.getcwd()


def load_user_code(blob: bytes, handler: str, container_code: ContainerCode | None = None) -> Any:
    """Unpickle a spec or handler here; importing the user's module counts as Beam's "importing user code".

    Replicas and task workers always run in their deployment's code (``container_code`` for a replica,
    else the ``working_dir``); a function task does when its caller had some (a replica calling
    ``.remote()``), and otherwise imports from its job's driver folders, which are then its own.
    """
    drop_in.install()
    code_dir = _enter(container_code) if container_code is not None else _shipped_code_dir()
    if code_dir is not None:
        isolate_imports(code_dir, handler)
    os.environ["BETA9_IMPORTING_USER_CODE"] = "true"
    try:
        return cloudpickle.loads(blob)
    finally:
        os.environ.pop("BETA9_IMPORTING_USER_CODE", None)


def function_context(**fields: Any) -> FunctionContext:
    """Beam's ``context`` for a handler running in this container, with its Python version."""
    return FunctionContext(python_version=f"python{sys.version_info.major}.{sys.version_info.minor}", **fields)


def run_hook(hook: Callable[[], Any] | None) -> Any:
    """Run ``on_start`` (awaited when async, in its own loop: the replica's loop may be running)."""
    if hook is None:
        return None
    if not inspect.iscoroutinefunction(hook):
        return hook()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = asyncio.run(hook())
        except BaseException as exc:  # re-raised in the constructor's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="beamray-on-start")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
