"""One Beam container: a deployment's own shipped code, loaded in isolation.

Serve replicas, task-queue workers and function tasks load the user's code through here, so each
imports exactly the files of its own deployment, as a Beam container does:

- ``beam`` / ``beta9`` resolve to beamray (programs are written ``from beam import …``);
- the deployment's code directory (its ``working_dir``, where Ray starts the process) comes first on
  ``sys.path``, and the handler's own folder next (``sub/app.py`` deployed from a parent folder);
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
from typing import Any, Callable

import cloudpickle

from beamray import drop_in, ray_private
from beamray.context import FunctionContext


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


def load_user_code(blob: bytes, handler: str) -> Any:
    """Unpickle a spec or handler here; importing the user's module counts as Beam's "importing user code".

    Replicas and task workers always run in their deployment's shipped code; a function task does when
    its caller had some (a replica calling ``.remote()``), and otherwise imports from its job's driver
    folders, which are then its own.
    """
    drop_in.install()
    code_dir = _shipped_code_dir()
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
