"""``beamray logs``: the logs of a deployment, a task or a container, read through Ray's log API.

A Beam id is turned into the Ray sources the dashboard shows (``ray.util.state``): a deployment's
running containers (``containers``: replicas, task workers, pods) plus the ended workers that ran its
tasks; a task's own attempts, each only its lines (task workers record their log offsets per task, see
``tasks.client.register_queue``), readable as long as Ray keeps the task's events; a container's actors
(a stopped task-queue container: the workers that ran tasks under its id).

Ray's worker logs carry no per-line times, so ``since`` applies per source: a task that ended before
that time is left out (Ray keeps no end time for actors: a replica's or worker's log is always shown).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

from beamray import cluster
from beamray.exceptions import BeamrayError, ClusterError
from beamray.registry import DeploymentRecord, Registry
from beamray.serve_bridge.logs import _RAY_MARKERS
from beamray.specs import QUEUED_KINDS

WORKER_RUN = "TaskWorker.run"  # the Ray function name of every queued task's call
STREAMS = {"out": "stdout", "err": "stderr"}
REDISCOVER_S = 3.0  # how often a follow looks for a deployment's new replicas or workers
MAX_RAY_TASKS = 10_000


class LogTargetNotFoundError(BeamrayError):
    """No deployment, task or container has the id asked for."""


@dataclass(frozen=True)
class LogSource:
    """One log the Ray log API serves: an actor's whole log, or one task attempt's part of it."""

    label: str  # what a line is shown with: the replica's or container's name, or the task id
    actor_id: str = ""
    task_id: str = ""  # Ray's task id: only that attempt's lines
    attempt: int = 0
    ended_at: float | None = None  # unix seconds, where Ray knows it (a task's end)
    alive: bool = True  # still writing: followed with ``follow``

    def query(self) -> dict[str, Any]:
        if self.task_id:
            return {"task_id": self.task_id, "attempt_number": self.attempt}
        return {"actor_id": self.actor_id}


@dataclass(frozen=True)
class LogLine:
    source: str
    stream: str  # stdout | stderr
    message: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def parse_since(value: str | None, now: float | None = None) -> float | None:
    """``30m``, ``2h``, ``45s``, ``1d`` or an ISO timestamp (UTC without an offset) → unix seconds."""
    if not value:
        return None
    import datetime

    now = time.time() if now is None else now
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
        return now - float(value[:-1]) * units[value[-1]]
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since must look like 30m, 2h, 45s, 1d or an ISO timestamp, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def resolver(*, deployment_id: str | None = None, task_id: str | None = None, container_id: str | None = None
             ) -> Callable[[], list[LogSource]]:
    """A function listing the sources behind the one id given (checked now: unknown → one clear error)."""
    given = [(kind, value) for kind, value in (("deployment", deployment_id), ("task", task_id),
                                               ("container", container_id)) if value]
    if len(given) != 1:
        raise ValueError("give one of --deployment-id, --task-id or --container-id")
    kind, identifier = given[0]
    if not cluster.info(with_resources=False).running:
        raise ClusterError("No cluster is running, so there are no logs to read. `beamray cluster up` starts it.")
    cluster.connect()
    if kind == "deployment":
        records = Registry().find(identifier)
        if not records:
            raise LogTargetNotFoundError(f"No deployment {identifier!r}. `beamray deployment list` shows the ids.")
        return lambda: _deployment_sources(records)
    if kind == "task":
        found = _task_sources(identifier)
        return lambda: _task_sources(identifier) or found
    sources = _container_sources(identifier)
    if not sources:
        raise LogTargetNotFoundError(f"No container {identifier!r}. `beamray container list` shows the running "
                                     "ones; a task's `container_id` (`beamray task show ID`) names its worker's.")
    return lambda: _container_sources(identifier) or sources


def read(sources: list[LogSource], tail: int = 100, since: float | None = None) -> list[LogLine]:
    """The last ``tail`` lines of each source's stdout, then of its stderr (sources by start time): the
    two streams are separate files without times, so they cannot be interleaved faithfully."""
    if tail <= 0:
        return []
    return [line for source in _current(sources, since) for suffix in STREAMS
            for line in _lines(source, suffix, _chunks(source, suffix, tail=tail))]


def follow(resolve: Callable[[], list[LogSource]], tail: int = 100, since: float | None = None,
           stop: threading.Event | None = None) -> Iterator[LogLine]:
    """Each source's last ``tail`` lines per stream, then its new lines as they are written, until ``stop``
    (or the caller stops iterating); sources that appear later (new replicas) are followed too. Ended
    sources are read once."""
    stop = stop or threading.Event()
    found: queue.Queue[LogLine] = queue.Queue()
    started: set[tuple[str, str, int]] = set()  # a source's identity: its end time may change meanwhile
    next_look = 0.0
    try:
        while not stop.is_set():
            if time.monotonic() >= next_look:
                try:
                    current = _current(resolve(), since)
                except Exception:  # the state API did not answer this time: look again later
                    if not started:
                        raise
                    current = []
                for source in current:
                    if (source.actor_id, source.task_id, source.attempt) not in started:
                        started.add((source.actor_id, source.task_id, source.attempt))
                        for suffix in STREAMS:
                            threading.Thread(target=_pump, args=(source, suffix, tail, found, stop), daemon=True,
                                             name=f"beamray-logs-{source.label}-{suffix}").start()
                next_look = time.monotonic() + REDISCOVER_S
            try:
                yield found.get(timeout=0.2)
            except queue.Empty:
                continue
    finally:
        stop.set()


def _pump(source: LogSource, suffix: str, tail: int, into: queue.Queue, stop: threading.Event) -> None:
    live = source.alive and source.ended_at is None
    try:
        for line in _lines(source, suffix, _chunks(source, suffix, tail=tail, follow=live)):
            if stop.is_set():
                return
            into.put(line)
    except Exception:  # the stream ends when its actor goes away: the others go on
        return


def _current(sources: list[LogSource], since: float | None) -> list[LogSource]:
    return [s for s in sources if since is None or s.ended_at is None or s.ended_at >= since]


def _chunks(source: LogSource, suffix: str, tail: int, follow: bool = False) -> Iterator[str]:
    from ray.util.state import get_log

    try:
        yield from get_log(**source.query(), suffix=suffix, tail=tail, follow=follow, errors="replace")
    except Exception as exc:
        if "not found" in str(exc).lower() or "could not find" in str(exc).lower():
            return  # nothing written on that stream (yet), or a worker Ray no longer knows
        raise BeamrayError(f"cannot read the {STREAMS[suffix]} log of {source.label} from Ray: {exc}") from exc


def _lines(source: LogSource, suffix: str, chunks: Iterator[str]) -> Iterator[LogLine]:
    """Whole lines, without the markers Ray writes into worker logs for its own use."""
    pending = ""
    for chunk in chunks:
        *complete, pending = (pending + chunk).split("\n")
        for line in complete:
            if not line.startswith(_RAY_MARKERS):
                yield LogLine(source.label, STREAMS[suffix], line.rstrip("\r"))
    if pending and not pending.startswith(_RAY_MARKERS):
        yield LogLine(source.label, STREAMS[suffix], pending)


def _deployment_sources(records: list[DeploymentRecord]) -> list[LogSource]:
    """The deployment's running containers (replicas, workers, pods), then the ended workers of its tasks."""
    from beamray import containers

    ids = {r.deployment_id for r in records}
    running = [c for c in containers.list_containers() if c.deployment_id in ids]
    sources = [source for container in running for source in _of_container(container)]
    queued = {r.stub_id for r in records if r.kind in QUEUED_KINDS}
    if queued:
        from beamray.tasks import client

        seen = {source.actor_id for source in sources}
        tasks = {t["id"]: t for t in client.list_tasks(limit=MAX_RAY_TASKS) if t["stub"]["id"] in queued}
        for ray_task in _worker_tasks():
            task = tasks.get(ray_task.name.rpartition(" task=")[2])
            if task is not None and ray_task.actor_id not in seen:
                seen.add(ray_task.actor_id)
                sources.insert(0, LogSource(task["container_id"] or ray_task.actor_id, actor_id=ray_task.actor_id,
                                            alive=False))
    return sources


def _of_container(container: Any) -> list[LogSource]:
    """A running container's logs: its actors' (a function call: its Ray task's)."""
    if container.ray_actor_ids:
        return [LogSource(container.container_id, actor_id=actor) for actor in container.ray_actor_ids]
    return [LogSource(container.container_id, task_id=container.ray_task_id)] if container.ray_task_id else []


def _worker_tasks(name: str | None = None) -> list[Any]:
    """Ray's records of queued tasks' calls (named ``module:function task=<id>``), oldest first."""
    from ray.util.state import list_tasks

    filters = [("name", "=", name)] if name else [("func_or_class_name", "=", WORKER_RUN)]
    found = list_tasks(filters=filters, limit=MAX_RAY_TASKS, detail=True, raise_on_missing_output=False)
    return sorted(found, key=lambda t: (t.start_time_ms or 0, t.attempt_number))


def _task_sources(task_id: str) -> list[LogSource]:
    """Each attempt of a queued task, its own lines (the actor's whole log where Ray kept no offsets)."""
    from beamray.tasks import client

    try:
        task = client.get(task_id)
    except client.TaskNotFoundError:
        raise LogTargetNotFoundError(f"No task {task_id!r}. `beamray task list` shows the ids.") from None
    handler = (task["stub"].get("config") or {}).get("handler")
    suffix = f" task={task_id}"
    attempts = _worker_tasks(f"{handler}{suffix}") if handler else []
    attempts = attempts or [t for t in _worker_tasks() if t.name.endswith(suffix)]
    sources = []
    for attempt in attempts:
        ended = attempt.end_time_ms / 1000 if attempt.end_time_ms else None
        if attempt.task_log_info:
            sources.append(LogSource(task_id, task_id=attempt.task_id, attempt=attempt.attempt_number,
                                     ended_at=ended))
        else:
            sources.append(LogSource(task_id, actor_id=attempt.actor_id, ended_at=ended))
    return sources


def _container_sources(container_id: str) -> list[LogSource]:
    """A running container (``containers.find``); else a task-queue container that ran tasks under its id."""
    from beamray import containers
    from beamray.tasks import client

    try:
        return _of_container(containers.find(container_id))
    except containers.ContainerNotFoundError:
        pass
    ran_there = {t["id"] for t in client.list_tasks(limit=MAX_RAY_TASKS) if t["container_id"] == container_id}
    actors = {t.actor_id for t in _worker_tasks() if t.name.rpartition(" task=")[2] in ran_there}
    return [LogSource(container_id, actor_id=actor, alive=False) for actor in sorted(actors)]
