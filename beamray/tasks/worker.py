"""One worker of a task-queue container: a Ray actor that runs queued tasks one at a time.

A container of Beam's (``workers`` processes sharing one ``container_id``) is ``workers`` of these
actors. Each loads the spec once and runs ``on_start`` once, whose value becomes
``context.on_start_value`` for every later task there; tasks then reach it as direct actor calls (no
worker lease per task). The spec arrives pickled: the service never imports user code.
"""

from __future__ import annotations

import traceback
from typing import Any

import ray

from beamray.context import wants_context
from beamray.runtime.container import function_context, load_user_code, run_hook
from beamray.runtime.worker import task_environment
from beamray.tasks.records import encode_result


@ray.remote(max_restarts=0, max_task_retries=0)
class TaskWorker:
    def __init__(self, spec_blob: bytes, handler: str, container_id: str) -> None:
        self.spec = load_user_code(spec_blob, handler)
        self.container_id = container_id
        self.wants_context = wants_context(self.spec.func)  # inspect.signature once, not per task
        runtime = self.spec.runtime
        with task_environment(runtime.env, runtime.secrets, {"CONTAINER_ID": container_id}, runtime.volumes):
            self.on_start_value = run_hook(self.spec.serving.on_start)

    def __repr__(self) -> str:
        """The container id: Ray's state API shows it as the actor's ``repr_name`` (``beamray container list``)
        and prefixes the worker's log lines with it."""
        return self.container_id

    def run(self, args: list[Any], kwargs: dict[str, Any], meta: dict[str, Any]) -> tuple:
        """``("ok", result, False, container)`` or ``("error", traceback, retryable, container)``.

        Ray-level failures (the process died) reach the service as errors of this call: a crash.
        """
        spec, container_id = self.spec, self.container_id
        stub_type = f"{spec.kind}/deployment"
        identity = {"CONTAINER_ID": container_id, "TASK_ID": meta["task_id"], "STUB_ID": meta["stub_id"],
                    "STUB_TYPE": stub_type, "TIMEOUT": str(int(spec.timeout or 0))}
        with task_environment(spec.runtime.env, spec.runtime.secrets, identity, spec.runtime.volumes):
            if self.wants_context:
                kwargs = {**kwargs, "context": function_context(
                    container_id=container_id, stub_id=meta["stub_id"], stub_type=stub_type,
                    callback_url=meta.get("callback_url") or None, task_id=meta["task_id"],
                    timeout=int(spec.timeout or 0), on_start_value=self.on_start_value)}
            try:
                result = encode_result(spec.func(*args, **kwargs))
            except BaseException as exc:  # reported as the task's status, never as a Ray error
                return ("error", traceback.format_exc(), type(exc) in spec.retry_for, container_id)
        return ("ok", result, False, container_id)
