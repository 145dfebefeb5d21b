"""``@function`` on a real local Ray cluster (4 logical CPUs, fake GPUs A10G + H100)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from beamray import RemoteExecutionError, function
from beamray.exceptions import InfeasibleResourcesError
from beamray.runtime import functions as runtime_functions

pytestmark = pytest.mark.cluster


@function(cpu=0.25)
def square(i):
    return i**2


@function(cpu=0.25)
def add(a, b=0):
    return a + b


@function(cpu=0.25)
def echo_args(*args):
    return args


@function(cpu=0.25, retries=0)
def fail_on_three(i):
    if i == 3:
        raise ValueError("three is bad")
    return i


@function(cpu=0.25, gpu="A10G")
def a10g_resources():
    return ray.get_runtime_context().get_assigned_resources(), os.environ.get("CUDA_VISIBLE_DEVICES")


@function(cpu=0.25, gpu=["T4", "H100", "A10G"])
def priority_resources(hold_seconds=0.0):
    time.sleep(hold_seconds)
    return ray.get_runtime_context().get_assigned_resources()


@function(cpu=0.25, timeout=1, retries=0)
def sleeps_past_timeout():
    time.sleep(30)
    return "should not finish"


@function(cpu=0.25, env={"GREETING": "hi"})
def environment():
    from beamray import env

    return os.environ.get("GREETING"), env.is_remote(), os.environ.get("TASK_ID")


@function(cpu=0.25)
def with_context(x, context):
    return x, context.task_id, context.container_id, context.stub_type, context.timeout


class Flaky(Exception):
    pass


class FlakySubclass(Flaky):
    pass


@function(cpu=0.25, retries=3, retry_for=[Flaky])
def flaky(counter_file: str, fail_times: int, error=Flaky):
    path = Path(counter_file)
    attempts = int(path.read_text() or 0) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts <= fail_times:
        raise error(f"attempt {attempts}")
    return attempts


@function(cpu=0.25, retries=2)
def killed_once(pid_file: str, done_file: str):
    pid_path = Path(pid_file)
    first_attempt = not pid_path.exists()
    pid_path.write_text(str(os.getpid()))
    if first_attempt:
        time.sleep(60)  # the test SIGKILLs this worker here
    with open(done_file, "a") as done:
        done.write("completed\n")
    return "survived"


def test_remote_returns_value(ray_cluster):
    assert square.remote(7) == 49
    assert add.remote(2, b=3) == 5


def test_bare_call_runs_remotely_outside_a_worker(ray_cluster):
    greeting, remote, task_id = environment()
    assert (greeting, remote) == ("hi", True)
    assert task_id  # a TASK_ID was set inside the task


def test_local_runs_in_process(ray_cluster):
    assert square.local(5) == 25
    assert os.environ.get("CONTAINER_ID") is None


def test_async_remote(ray_cluster):
    import asyncio

    assert asyncio.run(square.async_remote(9)) == 81


def test_context_is_injected_by_parameter_name(ray_cluster):
    value, task_id, container_id, stub_type, timeout = with_context.remote(4)
    assert value == 4 and task_id and container_id.startswith("function-")
    assert (stub_type, timeout) == ("function", 3600)


def test_map_spreads_tuples_and_lists_and_keeps_input_order(ray_cluster):
    assert list(square.map(range(20))) == [i**2 for i in range(20)]
    assert list(add.map([(1, 2), [3, 4], (5,)])) == [3, 7, 5]
    assert list(echo_args.map([{"a": 1}, "xy"])) == [({"a": 1},), ("xy",)]
    assert list(echo_args.map([([1, 2],)])) == [([1, 2],)]


def test_map_unordered_yields_every_result(ray_cluster):
    assert sorted(square.map(range(30), order_outputs=False)) == [i**2 for i in range(30)]


def test_map_failed_input_yields_none_and_reports_it(ray_cluster, capsys):
    assert list(fail_on_three.map(range(5))) == [0, 1, 2, None, 4]
    assert "Input 3 failed:" in capsys.readouterr().err


def test_map_return_exceptions_yields_the_error(ray_cluster):
    results = list(fail_on_three.map(range(5), return_exceptions=True))
    assert isinstance(results[3], RemoteExecutionError)
    assert isinstance(results[3].__cause__, ValueError)


def test_map_keeps_bounded_work_in_flight(ray_cluster, monkeypatch):
    monkeypatch.setattr(runtime_functions, "MAP_WINDOW", 8)
    consumed = []

    def inputs():
        for i in range(200):
            consumed.append(i)
            yield i

    results = square.map(inputs())
    for received, value in enumerate(results, start=1):
        assert value == (received - 1) ** 2
        assert len(consumed) - received <= 8  # never more than the window ahead of the consumer
    assert received == 200


def test_remote_failure_raises_remote_execution_error(ray_cluster):
    with pytest.raises(RemoteExecutionError) as caught:
        fail_on_three.remote(3)
    assert isinstance(caught.value.__cause__, ValueError)
    assert "three is bad" in caught.value.output


def test_timeout_stops_the_task_and_names_the_function(ray_cluster):
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="test_function:sleeps_past_timeout timed out after 1s"):
        sleeps_past_timeout.remote()
    assert time.monotonic() - started < 15


def test_retry_for_reruns_on_the_listed_exception(ray_cluster, tmp_path):
    assert flaky.remote(str(tmp_path / "n"), 2) == 3


def test_retry_for_matches_the_exact_type_only(ray_cluster, tmp_path):
    with pytest.raises(RemoteExecutionError):
        flaky.remote(str(tmp_path / "n"), 1, FlakySubclass)
    assert (tmp_path / "n").read_text() == "1"


def test_retry_for_gives_up_after_retries(ray_cluster, tmp_path):
    with pytest.raises(RemoteExecutionError) as caught:
        flaky.remote(str(tmp_path / "n"), 10)
    assert isinstance(caught.value.__cause__, Flaky)
    assert (tmp_path / "n").read_text() == "4"  # the first run and 3 retries


def test_worker_killed_mid_task_is_retried_and_completes_once(ray_cluster, tmp_path):
    pid_file, done_file = tmp_path / "pid", tmp_path / "done"
    ref = killed_once.runner.submit((str(pid_file), str(done_file)), {})
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert ray.get(ref, timeout=60) == "survived"
    assert done_file.read_text() == "completed\n"


def test_gpu_type_maps_to_ray_accelerator_resource(ray_cluster):
    assigned, visible = a10g_resources.remote()
    assert assigned["GPU"] == 1 and "accelerator_type:A10G" in assigned
    assert visible is not None and visible != ""


def test_gpu_priority_list_takes_first_type_the_cluster_has(ray_cluster):
    assigned = priority_resources.remote()
    assert "accelerator_type:H100" in assigned  # T4 is absent; H100 is first after it


@ray.remote(num_cpus=0, resources={"accelerator_type:H100": 1})
def take_every_h100(seconds):
    time.sleep(seconds)
    return "held"


def test_gpu_priority_list_falls_back_when_first_type_is_busy(ray_cluster):
    busy = take_every_h100.remote(6)  # the fake node's whole H100 capacity, as a busy H100 node would be
    deadline = time.monotonic() + 20
    while ray.available_resources().get("accelerator_type:H100", 0) > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "accelerator_type:A10G" in priority_resources.remote()
    assert ray.get(busy) == "held"


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"gpu": "RTX4090"}, "RTX4090"),
        ({"gpu": "A10G", "gpu_count": 3}, "GPU=3"),
        ({"memory": "100Gi"}, "memory=102400MiB"),
        ({"cpu": 64}, "CPU=64"),
    ],
)
def test_infeasible_request_fails_at_once_naming_what_was_asked(ray_cluster, kwargs, named):
    impossible = function(**kwargs)(square.func)
    started = time.monotonic()
    with pytest.raises(InfeasibleResourcesError) as caught:
        impossible.remote(2)
    assert time.monotonic() - started < 5
    assert named in str(caught.value) and "nodes:" in str(caught.value)


def test_invalid_gpu_name_fails_at_first_run_not_decoration(ray_cluster):
    bogus = function(gpu="FOO")(square.func)
    with pytest.raises(ValueError, match="Invalid GPU type: FOO"):
        bogus.remote(1)


def test_task_carries_the_handler_name_in_the_dashboard(ray_cluster):
    from ray.util.state import list_tasks

    square.remote(11)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        names = {task.name for task in list_tasks(address=ray_cluster["dashboard_url"], limit=10000)}
        if "tests.test_function:square" in names:
            return
        time.sleep(0.5)
    pytest.fail(f"no task named test_function:square among {sorted(names)[:20]}")


HEADLESS_CALLER = """
import sys, time
from pathlib import Path
from beamray import function

@function(cpu=0.25, headless=True)
def headless_writer(path, delay):
    time.sleep(delay)
    Path(path).write_text("finished")

headless_writer.remote(sys.argv[1], 4)
"""


def test_headless_task_outlives_its_caller(ray_cluster, tmp_path):
    marker = tmp_path / "marker"
    script = tmp_path / "caller.py"
    script.write_text(HEADLESS_CALLER)
    caller = subprocess.Popen([sys.executable, str(script), str(marker)], cwd=tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _task_running(ray_cluster, "caller:headless_writer"):
        time.sleep(0.2)
    caller.kill()
    caller.wait()
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.read_text() == "finished"


def _task_running(ray_cluster, name: str) -> bool:
    from ray.util.state import list_tasks

    tasks = list_tasks(address=ray_cluster["dashboard_url"], limit=10000)
    return any(task.name.endswith(name) and task.state == "RUNNING" for task in tasks)


@function(cpu=0.25, secrets=["VISIBILITY_PROBE"])
def read_probe_secret():
    return os.environ["VISIBILITY_PROBE"]


def test_secret_values_never_appear_in_ray_state_or_job_metadata(ray_cluster):
    from ray.util.state import list_actors, list_jobs, list_tasks

    from beamray import secrets

    value = "s3cr3t-" + os.urandom(8).hex()
    secrets.create("VISIBILITY_PROBE", value)
    try:
        assert read_probe_secret.remote() == value
        address = ray_cluster["dashboard_url"]
        deadline = time.monotonic() + 30
        tasks: list = []
        while "read_probe_secret" not in repr(tasks) and time.monotonic() < deadline:
            time.sleep(0.5)  # task events reach the state API after a short delay
            tasks = list_tasks(address=address, detail=True, limit=10000)
        assert "read_probe_secret" in repr(tasks)  # the listing does include our task
        listings = [tasks, list_jobs(address=address), list_actors(address=address, detail=True, limit=10000)]
        assert value not in repr(listings)
    finally:
        secrets.delete("VISIBILITY_PROBE")
