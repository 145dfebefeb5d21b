"""``@function`` on Ray: one Ray remote function per spec, calls, fan-out and error translation."""

from __future__ import annotations

import collections
import importlib
import itertools
import os
import re
import statistics
import sys
import time
import traceback
import uuid
from typing import Any, Callable, Iterable, Iterator

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError, TaskCancelledError, WorkerCrashedError

from beamray import cluster, ray_private
from beamray.context import wants_context
from beamray.exceptions import RemoteExecutionError
from beamray.runtime import fanout, resources as resource_options
from beamray.runtime.container import entered_code, function_context, load_user_code
from beamray.runtime.image import image_runtime_env
from beamray.runtime.progress import MapProgress
from beamray.runtime.worker import FunctionTimeoutError, RetryableTaskError, deadline, task_environment
from beamray.specs import FunctionSpec

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
MAP_WINDOW = int(os.environ.get("BEAMRAY_MAP_WINDOW", "4096"))


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
    job with a runtime env cannot use the workers Ray keeps warm). Called from a replica, the task enters
    the replica's code, as a child of an actor with a ``working_dir`` would inherit it.
    """
    import cloudpickle

    payload = cloudpickle.dumps(func)
    caller_code = entered_code()
    loaded: list[Callable[..., Any]] = []

    def handler() -> Callable[..., Any]:
        if caller_code is not None and entered_code() != caller_code:
            loaded.clear()  # this worker ran another deployment's tasks since: enter ours again
        if not loaded:
            loaded.append(load_user_code(payload, handler_name, caller_code))
        return loaded[0]

    return handler


class _TaskBody:
    """Beam's container environment around one call of the user's handler, inside a Ray worker."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.handler, self.name, self.runtime = _handler_loader(spec.func, spec.handler), spec.handler, spec.runtime
        self.inject_context, self.timeout = wants_context(spec.func), spec.timeout
        self.retry_for, self.retries = spec.retry_for, spec.retries
        self.default_callback, self.stub_id = spec.callback_url, stub_id(spec)

    def load(self) -> None:
        """What a worker's first call loads (the handler, the secrets module), so timings see the handler only."""
        importlib.import_module("beamray.secrets")  # task_environment imports it on first use
        self.handler()

    def container_id(self) -> str:
        return f"function-{self.stub_id[:8]}-{ray.get_runtime_context().get_worker_id()[:8]}"

    def invoke(self, args: tuple[Any, ...], kwargs: dict[str, Any], task_id: str, container_id: str,
               retryable: Callable[[BaseException], bool]) -> Any:
        """Run the handler once; an exception ``retryable`` accepts comes out as ``RetryableTaskError``."""
        callback_url = kwargs.pop("callback_url", None) or self.default_callback
        identity = {"CONTAINER_ID": container_id, "TASK_ID": task_id, "STUB_ID": self.stub_id,
                    "STUB_TYPE": "function", "TIMEOUT": str(int(self.timeout or 0))}
        with task_environment(self.runtime.env, self.runtime.secrets, identity, self.runtime.volumes):
            if self.inject_context:
                kwargs["context"] = function_context(
                    container_id=container_id, stub_id=self.stub_id, stub_type="function",
                    callback_url=callback_url or None, task_id=task_id, timeout=int(self.timeout or 0),
                )
            try:
                with deadline(self.timeout, self.name):
                    result = self.handler()(*args, **kwargs)
            except BaseException as exc:
                if type(exc) in self.retry_for and retryable(exc):
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


def _make_task_body(spec: FunctionSpec) -> Callable[..., Any]:
    """The function Ray runs for one call: a ``retry_for`` failure is retried by Ray, counted in the GCS."""
    body = _TaskBody(spec)

    def beamray_function(*args: Any, **kwargs: Any) -> Any:
        task_id = ray.get_runtime_context().get_task_id() or uuid.uuid4().hex
        return body.invoke(args, kwargs, task_id, body.container_id(),
                           lambda exc: _attempts_so_far(task_id) <= body.retries)

    beamray_function.__qualname__ = f"beamray_function:{body.stub_id}"  # read by `beamray container list`
    return beamray_function


def _make_chunk_body(spec: FunctionSpec) -> Callable[..., Any]:
    """The function Ray runs for a chunk of ``.map`` inputs: each input with its own id, retries and deadline.

    Returns each input's result (a failure as the ``RayTaskError`` Ray would have stored for it) and the
    median seconds an input took, for the chunk plan. A failure that is not the handler's own (the process
    dies, ``SystemExit``) fails the chunk; past Ray's retries, ``.map`` re-runs its inputs one per task.
    """
    body = _TaskBody(spec)

    def beamray_map_chunk(items: list[tuple[Any, ...]]) -> tuple[list[Any], float]:
        container_id = body.container_id()
        body.load()
        outcomes: list[Any] = []
        seconds: list[float] = []
        for args in items:
            task_id, attempt, started = uuid.uuid4().hex, 0, time.perf_counter()
            while True:
                try:
                    outcomes.append(body.invoke(args, {}, task_id, container_id,
                                                lambda exc, tried=attempt: tried < body.retries))
                except RetryableTaskError:
                    attempt += 1
                    continue
                except Exception as exc:
                    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                    outcomes.append(_InputFailed(RayTaskError(f"{body.name}()", trace, exc)))
                break
            seconds.append(time.perf_counter() - started)
        return outcomes, statistics.median(seconds)

    beamray_map_chunk.__qualname__ = f"beamray_map_chunk:{body.stub_id}"  # read by `beamray container list`
    return beamray_map_chunk


class _InputFailed:
    """One chunked input's failure, as the error Ray would have raised for its own task."""

    def __init__(self, error: RayTaskError) -> None:
        self.error = error


class FunctionRunner:
    """Submits a spec's calls to Ray; built once per decorated function, used for every call."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self._remote: Any = None
        self._options: dict[str, Any] | None = None
        self._bound: Any = None  # the remote function with its options applied, reused while they hold
        self._chunk_remote: Any = None
        self._bound_chunk: Any = None  # the same for ``.map``'s chunks

    def _remote_function(self) -> Any:
        if self._remote is None or not ray.is_initialized():
            cluster.connect()
            self._remote = ray.remote(_make_task_body(self.spec))
            self._chunk_remote = ray.remote(_make_chunk_body(self.spec))
            self._bound = self._bound_chunk = None
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
                self._options, self._bound, self._bound_chunk = options, None, None
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
        """Stream results with at most ``MAP_WINDOW`` inputs unfinished; a failed input yields None.

        Inputs travel in chunks sized by ``fanout.ChunkPlan``; each keeps its own result, order, retries,
        deadline and failure line, as if it had had a task of its own.
        """
        total = len(inputs) if hasattr(inputs, "__len__") else None  # type: ignore[arg-type]
        progress = MapProgress(self.spec.handler, total)
        self._remote_function()
        chunks = _ChunkedMap(self, total)
        numbered = enumerate(inputs)
        for outcome in chunks.run(numbered, order_outputs, return_exceptions):
            progress.advance()
            yield outcome
        progress.close()

    def submit_chunk(self, items: list[tuple[Any, ...]]) -> ray.ObjectRef:
        """One Ray task running several ``.map`` inputs. Ray retries it when its process dies (``retries``
        times); the handler's own exceptions are settled per input inside it."""
        self._remote_function()
        options = self._task_options()
        if self._bound_chunk is None:
            self._bound_chunk = self._chunk_remote.options(**dict(options, retry_exceptions=False))
        return self._bound_chunk.remote(items)

    def outcome(self, index: int, ref: ray.ObjectRef, return_exceptions: bool) -> Any:
        """The result of a single input's task, or its failure reported as ``Input N failed``."""
        try:
            return ray.get(ref)
        except RayError as exc:
            return _failed_input(index, translate_error(exc, ref), return_exceptions)


def _failed_input(index: int, error: BaseException, return_exceptions: bool) -> Any:
    if return_exceptions:
        return error
    print(f"Input {index} failed: {error}", file=sys.stderr)
    return None


def _spread(item: Any) -> tuple[Any, ...]:
    # Beam's quirk: tuples and lists spread as positional arguments; anything else is one argument.
    return tuple(item) if isinstance(item, (tuple, list)) else (item,)


class _ChunkedMap:
    """The driver's side of one ``.map``: chunks submitted per the plan, results collected as they finish."""

    def __init__(self, runner: FunctionRunner, total: int | None) -> None:
        self.runner = runner
        cpus = runner.spec.resources.cpu
        self.plan = fanout.ChunkPlan(resource_options.cluster_cpus(), cpus, total)
        self.chunks: dict[ray.ObjectRef, list[tuple[int, tuple[Any, ...]]]] = {}  # chunk → its inputs
        self.singles: dict[ray.ObjectRef, int] = {}  # a failed chunk's inputs, re-run one per task
        self.backlog: collections.deque[tuple[int, tuple[Any, ...]]] = collections.deque()  # ... awaiting a slot
        self.submitted = 0

    def run(self, numbered: Iterator[tuple[int, Any]], order_outputs: bool,
            return_exceptions: bool) -> Iterator[Any]:
        finished: dict[int, Any] = {}
        next_index, exhausted = 0, False
        while True:
            unfinished = self.submitted - next_index
            while self.backlog and len(self.chunks) + len(self.singles) < self.plan.in_flight():
                index, args = self.backlog.popleft()
                self.singles[self.runner.submit(args, {})] = index
            while not exhausted and len(self.chunks) < self.plan.in_flight() and unfinished < MAP_WINDOW:
                items = [(index, _spread(item)) for index, item in
                         itertools.islice(numbered, min(self.plan.size(self.submitted), MAP_WINDOW - unfinished))]
                if not items:
                    exhausted = True
                    break
                self.chunks[self.runner.submit_chunk([args for _, args in items])] = items
                self.submitted += len(items)
                unfinished += len(items)
            if not self.chunks and not self.singles and not self.backlog:
                return
            for index, outcome in self._collect(return_exceptions):
                if not order_outputs:
                    next_index += 1
                    yield outcome
                    continue
                finished[index] = outcome
                while next_index in finished:
                    yield finished.pop(next_index)
                    next_index += 1

    def _collect(self, return_exceptions: bool) -> Iterator[tuple[int, Any]]:
        """Wait for at least one task, then settle every finished one: (input index, outcome) pairs."""
        refs = list(self.chunks) + list(self.singles)
        done = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)[0]
        if not done:
            done = ray.wait(refs, num_returns=1, timeout=fanout.PROBE_S, fetch_local=False)[0]
        for ref in done:
            if ref in self.singles:
                index = self.singles.pop(ref)
                yield index, self.runner.outcome(index, ref, return_exceptions)
                continue
            items = self.chunks.pop(ref)
            try:
                outcomes, seconds = ray.get(ref)
            except RayError:  # the chunk's process died past its retries: each input gets a task of its own
                self.backlog.extend(items)
                continue
            self.plan.measured(seconds)
            for (index, _), outcome in zip(items, outcomes):
                if isinstance(outcome, _InputFailed):
                    outcome = _failed_input(index, translate_error(outcome.error, ref), return_exceptions)
                yield index, outcome


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
