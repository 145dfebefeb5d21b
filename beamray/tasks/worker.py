"""The Ray task that runs one queued task: Beam's task-queue container around the handler.

The spec arrives pickled (the service never imports user code); it is loaded once per worker process,
and so is ``on_start``, whose value becomes ``context.on_start_value`` for every later task there.
"""

from __future__ import annotations

import hashlib
import os
import sys
import traceback
from typing import Any

from beamray.context import FunctionContext, wants_context
from beamray.runtime.worker import task_environment
from beamray.tasks.records import encode_result

_loaded: dict[str, tuple[Any, Any]] = {}  # spec digest → (spec, on_start value), per worker process


def _load(spec_blob: bytes) -> tuple[Any, Any]:
    digest = hashlib.sha1(spec_blob).hexdigest()
    if digest not in _loaded:
        from beamray.serve_bridge.replica import load_spec, run_hook

        spec = load_spec(spec_blob)
        with task_environment(spec.runtime.env, spec.runtime.secrets, {"CONTAINER_ID": "taskqueue-on-start"}):
            _loaded[digest] = (spec, run_hook(spec.serving.on_start))
    return _loaded[digest]


def run_queued_task(spec_blob: bytes, args: list[Any], kwargs: dict[str, Any], meta: dict[str, Any]) -> tuple:
    """Returns ``("ok", result)`` or ``("error", traceback, retryable)``; Ray-level failures mean a crash."""
    import ray

    spec, on_start_value = _load(spec_blob)
    container_id = f"{spec.kind}-{meta['stub_id'][:8]}-{ray.get_runtime_context().get_worker_id()[:8]}"
    stub_type = f"{spec.kind}/deployment"
    identity = {"CONTAINER_ID": container_id, "TASK_ID": meta["task_id"], "STUB_ID": meta["stub_id"],
                "STUB_TYPE": stub_type, "TIMEOUT": str(int(spec.timeout or 0))}
    with task_environment(spec.runtime.env, spec.runtime.secrets, identity, spec.runtime.volumes):
        if wants_context(spec.func):
            kwargs = {**kwargs, "context": FunctionContext(
                container_id=container_id, stub_id=meta["stub_id"], stub_type=stub_type,
                callback_url=meta.get("callback_url") or None, task_id=meta["task_id"],
                timeout=int(spec.timeout or 0), on_start_value=on_start_value,
                python_version=f"python{sys.version_info.major}.{sys.version_info.minor}")}
        try:
            result = spec.func(*args, **kwargs)
        except BaseException as exc:  # reported as the task's status, never as a Ray error
            return ("error", traceback.format_exc(), type(exc) in spec.retry_for, container_id)
    return ("ok", encode_result(result), False, container_id)


def worker_pid() -> int:
    return os.getpid()
