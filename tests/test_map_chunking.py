"""``.map`` over many fast inputs runs them in chunks, and each input still behaves as if it had its own task."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from beamray import RemoteExecutionError, function
from beamray.runtime import fanout

pytestmark = pytest.mark.cluster


@function(cpu=0.1, retries=0)
def fail_on_sevens(i):
    if i % 100 == 7:
        raise ValueError(f"{i} is bad")
    return i * 2, os.environ["TASK_ID"], os.getpid()


class Flaky(Exception):
    pass


@function(cpu=0.1, retries=2, retry_for=[Flaky])
def flaky_per_input(folder, i, failures):
    marker = Path(folder) / str(i)
    count = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(count))
    if count <= failures:
        raise Flaky(f"attempt {count}")
    return i


@function(cpu=0.1, timeout=1, retries=0)
def slow_on_one(i):
    if i == 1:
        time.sleep(30)
    return i


@function(cpu=0.1, retries=0)
def exits_on_five(i):
    if i == 5:
        os._exit(1)
    return i


def test_fast_inputs_share_tasks_and_keep_order_ids_and_failures(ray_cluster, capsys):
    results = list(fail_on_sevens.map(range(2000)))
    assert [r and r[0] for r in results] == [None if i % 100 == 7 else i * 2 for i in range(2000)]
    err = capsys.readouterr().err
    assert all(f"Input {i} failed:" in err for i in range(7, 2000, 100)) and "107 is bad" in err
    ok = [r for r in results if r]
    assert len({task_id for _, task_id, _ in ok}) == len(ok)  # an id per input, as Beam gives
    errors = list(fail_on_sevens.map(range(200), return_exceptions=True, order_outputs=False))
    failed = [e for e in errors if isinstance(e, RemoteExecutionError)]
    assert len(failed) == 2 and all(isinstance(e.__cause__, ValueError) for e in failed)


def test_retries_count_per_input(ray_cluster, tmp_path):
    assert list(flaky_per_input.map([(str(tmp_path), i, 2) for i in range(300)])) == list(range(300))
    assert {(tmp_path / str(i)).read_text() for i in range(300)} == {"3"}
    (tmp_path / "x").mkdir()
    assert list(flaky_per_input.map([(str(tmp_path / "x"), 0, 5)])) == [None]
    assert (tmp_path / "x" / "0").read_text() == "3"  # the first run and 2 retries


def test_timeout_is_per_input(ray_cluster, capsys):
    assert list(slow_on_one.map(range(50))) == [0, None] + list(range(2, 50))
    assert "Input 1 failed: Function" in capsys.readouterr().err


def test_a_crashing_input_fails_alone(ray_cluster, capsys):
    assert list(exits_on_five.map(range(400))) == [None if i == 5 else i for i in range(400)]
    assert "Input 5 failed:" in capsys.readouterr().err


def test_plan_chunks_fast_inputs_and_not_slow_ones():
    plan = fanout.ChunkPlan(cluster_cpus=4, task_cpus=0.1, total=100_000)
    assert (plan.size(0), plan.in_flight()) == (1, 4)  # nothing measured yet: probe a core's worth
    plan.measured(0.00001)
    assert plan.size(0) == fanout.MAX_CHUNK and plan.in_flight() == 4
    assert plan.size(99_990) == 1  # the tail is split across cores
    slow = fanout.ChunkPlan(cluster_cpus=4, task_cpus=0.1, total=100)
    slow.measured(1.0)
    assert (slow.size(0), slow.in_flight()) == (1, 80)
