"""Unchanged Beam task queues used by the task tests."""

import os
import time
from pathlib import Path

from beamray import QueueDepthAutoscaler, TaskPolicy, task_queue


class Transient(Exception):
    pass


@task_queue(name="double", cpu=0.1, retries=2)
def double(x, context=None):
    return {"result": x * 2, "task_id": context.task_id}


def sleep_marked(seconds: float, marker: str) -> dict:
    """Write this worker's pid to ``marker`` (so tests can see the process), then sleep."""
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return {"slept": seconds}


@task_queue(name="slow", cpu=0.1, timeout=5, retries=0, max_pending_tasks=3,
            autoscaler=QueueDepthAutoscaler(max_containers=1))
def slow(seconds: float = 30.0, marker: str = ""):
    return sleep_marked(seconds, marker)


def slow_loader():
    time.sleep(4)
    return "loaded"


@task_queue(name="slow-start", cpu=0.1, timeout=2, retries=0, on_start=slow_loader)
def slow_start(context=None):
    time.sleep(0.5)
    return {"on_start": context.on_start_value}


@task_queue(name="flaky", cpu=0.1, retries=3, retry_for=[Transient])
def flaky(counter: str, fail_times: int):
    path = Path(counter)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts <= fail_times:
        raise Transient(f"attempt {attempts}")
    return {"attempts": attempts}


@task_queue(name="broken", cpu=0.1, retries=3)
def broken():
    raise ValueError("always broken")


@task_queue(name="expiring", cpu=0.1, task_policy=TaskPolicy(ttl=1), timeout=60,
            autoscaler=QueueDepthAutoscaler(max_containers=1))
def expiring(seconds: float = 0.0):
    time.sleep(seconds)
    return {"done": True}


@task_queue(name="killable", cpu=0.1, retries=2)
def killable(pid_file: str, done_file: str):
    first = not Path(pid_file).exists()
    Path(pid_file).write_text(str(os.getpid()))
    if first:
        time.sleep(60)
    with open(done_file, "a") as done:
        done.write("completed\n")
    return {"survived": True}


@task_queue(name="notify", cpu=0.1, retries=0)
def notify(x, callback_url=None):  # Beam: request-level callbacks need the handler to accept callback_url
    if x < 0:
        raise ValueError("negative")
    return {"result": x * 2}


@task_queue(name="bulk", cpu=0.1, max_pending_tasks=500,
            autoscaler=QueueDepthAutoscaler(max_containers=4, tasks_per_container=10))
def bulk(x):
    return {"result": x * 2}


@task_queue(name="steady", cpu=0.1, autoscaler=QueueDepthAutoscaler(max_containers=1))
def steady(seconds: float = 0.0, tag: str = ""):
    time.sleep(seconds)
    return {"tag": tag}


@task_queue(name="blocking", cpu=0.1, timeout=120, retries=0, max_pending_tasks=3,
            autoscaler=QueueDepthAutoscaler(max_containers=1))
def blocking(seconds: float = 60.0, marker: str = ""):
    return sleep_marked(seconds, marker)


def started_pid() -> int:
    return os.getpid()


@task_queue(name="warm", cpu=0.1, keep_warm_seconds=2, on_start=started_pid,
            autoscaler=QueueDepthAutoscaler(max_containers=2, tasks_per_container=1))
def warm(seconds: float = 0.0, context=None):
    time.sleep(seconds)
    return {"pid": os.getpid(), "on_start_pid": context.on_start_value, "container_id": context.container_id}


@task_queue(name="stoppable", cpu=0.1, retries=0, timeout=120, autoscaler=QueueDepthAutoscaler(max_containers=1))
def stoppable(seconds: float = 0.0):
    time.sleep(seconds)
    return {"slept": seconds}


@task_queue(name="sized", cpu=0.1, retries=0)
def sized(size: int):
    return "x" * size


@task_queue(name="ledger", cpu=0.1, retries=3, timeout=120, max_pending_tasks=100,
            autoscaler=QueueDepthAutoscaler(max_containers=3, tasks_per_container=1))
def ledger(n: int, seconds: float, folder: str, context=None):
    """Leave this run's pid while it runs and one line per finished run (``n`` and when it ended): tests
    count real runs."""
    staged = Path(folder, f"{context.task_id}.pid.tmp")  # renamed whole: a reader never sees it empty
    staged.write_text(str(os.getpid()))
    staged.rename(staged.with_suffix(""))
    time.sleep(seconds)
    with open(Path(folder, f"{context.task_id}.done"), "a") as runs:
        runs.write(f"{n} {time.time():.3f}\n")
    return {"n": n}
