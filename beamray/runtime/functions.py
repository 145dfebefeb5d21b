"""``@function`` on Ray: one Ray remote function per spec, calls, fan-out and error translation."""

from __future__ import annotations

import itertools
import os
import re
import sys
import time
import uuid
from typing import Any, Callable, Iterable, Iterator

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError, TaskCancelledError, WorkerCrashedError

from beamray import cluster, ray_private
from beamray.context import wants_context
from beamray.exceptions import RemoteExecutionError
from beamray.runtime import resources as resource_options
from beamray.runtime.container import function_context, load_user_code
from beamray.runtime.image import image_runtime_env
from beamray.runtime.worker import FunctionTimeoutError, RetryableTaskError, deadline, task_environment
from beamray.specs import FunctionSpec

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
MAP_WINDOW = int(os.environ.get("BEAMRAY_MAP_WINDOW", "4096"))
_PROGRESS_MIN_ITEMS = 100


def stub_id(spec: FunctionSpec) -> str:
    """A stable id for a handler + name, standing in for Beam's stub id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"beamray:function:{spec.app}:{spec.name}:{spec.handler}"))


def _attempts_so_far(task_id: str) -> int:
    """How many times ``task_id`` failed with a ``retry_for`` exception (Ray exposes no attempt number)."""
    kv, key = ray_private.InternalKV("beamray"), f"beamray/attempts/{task_id}"
    count = int(kv.get(key) or 0) + 1
    kv.put(key, str(count).encode())
    return count


def _handler_loader(func: Callable[..., Any], handler_name: str) -> Callable[[], Callable[..., Any]]:
    """Unpickle the handler inside the worker on first use, through the container loader.

    A program run by ``beamray run`` imports ``beam``; its handler (and the modules it pulls in) can only
    be unpickled once the alias is installed, which the loader does instead of a job-wide setup hook (a
    job with a runtime env cannot use the workers Ray keeps warm).
    """
    import cloudpickle

    payload = cloudpickle.dumps(func)
    loaded: list[Callable[..., Any]] = []

    def handler() -> Callable[..., Any]:
        if not loaded:
            loaded.append(load_user_code(payload, handler_name))
        return loaded[0]

    return handler


def _make_task_body(spec: FunctionSpec) -> Callable[..., Any]:
    """The function Ray runs: Beam's container environment around the user's handler."""
    handler, name, runtime = _handler_loader(spec.func, spec.handler), spec.handler, spec.runtime
    inject_context, timeout, retry_for, retries = wants_context(spec.func), spec.timeout, spec.retry_for, spec.retries
    default_callback, function_stub_id = spec.callback_url, stub_id(spec)

    def beamray_function(*args: Any, **kwargs: Any) -> Any:
        context = ray.get_runtime_context()
        task_id = context.get_task_id() or uuid.uuid4().hex
        container_id = f"function-{function_stub_id[:8]}-{context.get_worker_id()[:8]}"
        callback_url = kwargs.pop("callback_url", None) or default_callback
        identity = {"CONTAINER_ID": container_id, "TASK_ID": task_id, "STUB_ID": function_stub_id,
                    "STUB_TYPE": "function", "TIMEOUT": str(int(timeout or 0))}
        with task_environment(runtime.env, runtime.secrets, identity, runtime.volumes):
            if inject_context:
                kwargs["context"] = function_context(
                    container_id=container_id, stub_id=function_stub_id, stub_type="function",
                    callback_url=callback_url or None, task_id=task_id, timeout=int(timeout or 0),
                )
            try:
                with deadline(timeout, name):
                    result = handler()(*args, **kwargs)
            except BaseException as exc:
                retryable = type(exc) in retry_for and _attempts_so_far(task_id) <= retries
                if retryable:
                    raise RetryableTaskError(exc) from exc
                if callback_url:
                    from beamray import callbacks

                    status = "TIMEOUT" if isinstance(exc, FunctionTimeoutError) else "ERROR"
                    callbacks.send(callback_url, task_id, status, {})
                raise
            if callback_url:
                from beamray import callbacks

                callbacks.send(callback_url, task_id, "COMPLETE", result)
            return result

    return beamray_function


class FunctionRunner:
    """Submits a spec's calls to Ray; built once per decorated function, used for every call."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self._remote: Any = None
        self._options: dict[str, Any] | None = None
        self._bound: Any = None  # the remote function with its options applied, reused while they hold

    def _remote_function(self) -> Any:
        if self._remote is None or not ray.is_initialized():
            cluster.connect()
            self._remote = ray.remote(_make_task_body(self.spec))
            self._bound = None
        return self._remote

    def _task_options(self) -> dict[str, Any]:
        what = f"Function {self.spec.handler}"
        if self._options is None or len(self.spec.resources.gpu) > 1:  # a priority list is chosen per call
            options = resource_options.resolve(self.spec.resources, what)
            options.update(name=self.spec.handler, max_retries=self.spec.retries,
                           retry_exceptions=[RetryableTaskError] if self.spec.retry_for else False)
            image_env = image_runtime_env(self.spec.runtime.image, what)
            if image_env:
                options["runtime_env"] = image_env
            if options != self._options:
                self._options, self._bound = options, None
        else:
            resource_options.check_feasible(self._options, what)
        return self._options

    def submit(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ray.ObjectRef:
        remote = self._remote_function()
        options = self._task_options()
        if self._bound is None:
            self._bound = remote.options(**options)
        return self._bound.remote(*args, **kwargs)

    def submit_headless(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ray.ObjectRef:
        """Submit through a detached owner, so the task outlives this process (``headless=True``)."""
        remote = self._remote_function()
        owner = _HeadlessOwner.options(name="beamray-headless-owner", namespace=cluster.NAMESPACE,
                                       lifetime="detached", get_if_exists=True).remote()
        return owner.run.remote(remote, self._task_options(), args, kwargs)

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ref = self.submit_headless(args, kwargs) if self.spec.headless else self.submit(args, kwargs)
        try:
            return ray.get(ref)
        except KeyboardInterrupt:
            if not self.spec.headless:
                ray.cancel(ref, force=True)
            raise
        except RayError as exc:
            error = translate_error(exc, ref)
            raise error from error.__cause__

    def map(self, inputs: Iterable[Any], *, order_outputs: bool = True,
            return_exceptions: bool = False) -> Iterator[Any]:
        """Stream results with at most ``MAP_WINDOW`` calls in flight; a failed input yields None."""
        total = len(inputs) if hasattr(inputs, "__len__") else None  # type: ignore[arg-type]
        progress = _Progress(self.spec.handler, total)
        numbered = enumerate(inputs)
        pending = {self._submit_item(item): index for index, item in itertools.islice(numbered, MAP_WINDOW)}
        batch = _BatchSize()
        while pending:
            started = time.monotonic()
            done = _next_finished(pending, batch.size, order_outputs)
            batch.adapt(time.monotonic() - started)
            for outcome in self._outcomes(done, return_exceptions):
                following = next(numbered, None)  # one in, one out: the window bounds what is in flight
                if following is not None:
                    pending[self._submit_item(following[1])] = following[0]
                progress.advance()
                yield outcome
        progress.close()

    def _outcomes(self, done: list[tuple[int, ray.ObjectRef]], return_exceptions: bool) -> Iterator[Any]:
        try:
            values = ray.get([ref for _, ref in done])
        except RayError:  # some input failed: settle each on its own
            values = [self._outcome(index, ref, return_exceptions) for index, ref in done]
        yield from values

    def _submit_item(self, item: Any) -> ray.ObjectRef:
        # Beam's quirk: tuples and lists spread as positional arguments; anything else is one argument.
        args = tuple(item) if isinstance(item, (tuple, list)) else (item,)
        return self.submit(args, {})

    def _outcome(self, index: int, ref: ray.ObjectRef, return_exceptions: bool) -> Any:
        try:
            return ray.get(ref)
        except RayError as exc:
            error = translate_error(exc, ref)
            if return_exceptions:
                return error
            print(f"Input {index} failed: {error}", file=sys.stderr)
            return None


class _BatchSize:
    """How many results ``.map`` collects per round: one ``ray.wait`` and ``ray.get`` per result would cost
    as much as a trivial task. Doubled while rounds are quick, halved when slow, so trivial tasks come in
    bulk and slow ones one by one (the first result never waits long)."""

    MAX = 512

    def __init__(self) -> None:
        self.size = 1

    def adapt(self, seconds: float) -> None:
        if seconds < 0.01:
            self.size = min(self.size * 2, self.MAX)
        elif seconds > 0.05:
            self.size = max(self.size // 2, 1)


def _next_finished(
    pending: dict[ray.ObjectRef, int], size: int, order_outputs: bool,
) -> list[tuple[int, ray.ObjectRef]]:
    """Wait for and remove up to ``size`` finished calls: the oldest ones in input order, or any finished."""
    if order_outputs:
        finished = list(itertools.islice(pending, size))
        ray.wait(finished, num_returns=len(finished), fetch_local=False)
    else:
        oldest = list(itertools.islice(pending, 4 * size))  # calls finish roughly in submission order
        finished = ray.wait(oldest, num_returns=min(size, len(oldest)), timeout=0.05, fetch_local=False)[0]
        if not finished:
            finished = ray.wait(list(pending), num_returns=1, fetch_local=False)[0]
    return [(pending.pop(ref), ref) for ref in finished]


@ray.remote(num_cpus=0, max_concurrency=1000)
class _HeadlessOwner:
    """Owns headless tasks: Ray stops a task when its owner exits, and this actor is detached."""

    def run(self, remote: Any, options: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return ray.get(remote.options(**options).remote(*args, **kwargs))


def translate_error(exc: RayError, ref: ray.ObjectRef) -> BaseException:
    """Ray's failure → what a Beam program expects: a TimeoutError naming the function, or RemoteExecutionError."""
    task_id = ref.task_id().hex()
    if isinstance(exc, RayTaskError):
        cause = exc.cause
        while isinstance(cause, RayTaskError):  # headless calls nest the task's error in the owner's
            cause = cause.cause
        if isinstance(cause, RetryableTaskError):
            cause = cause.original
        if isinstance(cause, FunctionTimeoutError):
            return cause
        error = RemoteExecutionError(task_id, "ERROR", 1, _ANSI.sub("", str(exc)))
        error.__cause__ = cause
        return error
    if isinstance(exc, TaskCancelledError):
        return RemoteExecutionError(task_id, "CANCELLED", 3, str(exc))
    if isinstance(exc, WorkerCrashedError):
        return RemoteExecutionError(task_id, "ERROR", -9, str(exc))
    if isinstance(exc, GetTimeoutError):
        return RemoteExecutionError(task_id, "TIMEOUT", 4, str(exc))
    return RemoteExecutionError(task_id, "ERROR", 1, str(exc))


class _Progress:
    """A one-line progress counter on stderr for long maps on a terminal."""

    def __init__(self, label: str, total: int | None) -> None:
        self.enabled = sys.stderr.isatty() and (total is None or total >= _PROGRESS_MIN_ITEMS)
        self.label, self.total, self.done, self._shown = label, total, 0, 0.0

    def advance(self) -> None:
        self.done += 1
        if self.enabled and time.monotonic() - self._shown > 0.2:
            self._shown = time.monotonic()
            of = f"/{self.total}" if self.total is not None else ""
            sys.stderr.write(f"\r=> Map <{self.label}>: {self.done}{of} done")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write(f"\r=> Map <{self.label}>: {self.done} done\n")
