"""``Queue`` and ``Map`` on named detached Ray actors: Beam's API, sharing, FIFO under load, durability.

Cluster tests use the shared session cluster (unique names per test); the Redis tests use a real
``redis-server``. The contents surviving ``cluster down && up`` with Redis are checked on a private cluster
by tests/tasks/test_task_durability.py; the session cluster is never stopped.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from beamray import function
from beamray.adapters.map import Map
from beamray.adapters.queue import Queue, QueueFullError, SimpleQueueInternalServerError
from beamray.exceptions import BeamrayError
from tests.conftest import free_port, redis_server

cluster = pytest.mark.cluster

# Scripts run by separate driver processes, written as a Beam program would be.
IMPORTS = """
import json, sys, time
try:
    from beamray import Map, Queue
except ImportError:  # until beamray/__init__.py exports them
    from beamray.adapters.map import Map
    from beamray.adapters.queue import Queue
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run_script(tmp_path: Path, body: str, *args: str, env: dict[str, str] | None = None,
               timeout: float = 180) -> subprocess.CompletedProcess:
    script = tmp_path / f"script-{uuid.uuid4().hex[:6]}.py"
    script.write_text(IMPORTS + body)
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                            timeout=timeout, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


class Point:
    def __init__(self, x: int) -> None:
        self.x = x


# ------------------------------------------------------------------------------------------- no cluster

def test_constructors_are_keyword_only_and_touch_no_ray():
    with pytest.raises(TypeError):
        Queue("q")  # type: ignore[misc]
    with pytest.raises(TypeError):
        Map("m")  # type: ignore[misc]
    queue, dmap = Queue(name="q"), Map(name="m")
    assert (queue.name, queue.max_size, dmap.name) == ("q", 100, "m")
    with pytest.raises(ValueError, match="non-empty string"):
        Queue(name="")


def test_queue_remote_raises_not_implemented():
    with pytest.raises(NotImplementedError):
        Queue(name="q").remote()


def test_full_queue_error_is_a_server_error_and_a_beamray_error():
    assert issubclass(QueueFullError, SimpleQueueInternalServerError)
    assert issubclass(QueueFullError, BeamrayError)
    assert Queue.SimpleQueueInternalServerError is SimpleQueueInternalServerError


def test_map_rejects_values_over_one_mib_and_ttls_over_a_week_with_beams_messages():
    dmap = Map(name="limits")  # the checks run before any call to the cluster
    with pytest.raises(ValueError, match="^Value cannot be larger than 1 MiB$"):
        dmap.set("k", b"x" * (2**20 + 100))
    with pytest.raises(ValueError, match="^TTL cannot be longer than 1 week$"):
        dmap.set("k", 1, ttl=7 * 24 * 3600 + 1)
    with pytest.raises(TypeError, match="keys are strings"):
        dmap.set(1, "v")  # type: ignore[arg-type]


def test_put_header_matches_the_actor():
    from beamray.adapters import queue as queue_module
    from beamray.runtime import kv_actors

    assert queue_module._PUT_HEADER.format == kv_actors.PUT_HEADER.format
    assert Queue(name="q", max_size=7)._header == kv_actors.PUT_HEADER.pack(7)
    assert Queue(name="q", max_size=None)._header == Queue(name="q", max_size=0)._header == kv_actors.PUT_HEADER.pack(0)


def test_handles_pickle_without_their_actor():
    queue, dmap = Queue(name="q", max_size=5), Map(name="m")
    queue._methods, dmap._actor = ("stale",), "stale"
    queue2, dmap2 = pickle.loads(pickle.dumps(queue)), pickle.loads(pickle.dumps(dmap))
    assert (queue2.name, queue2.max_size, queue2._methods) == ("q", 5, None)
    assert (dmap2.name, dmap2._actor) == ("m", None)


# ---------------------------------------------------------------------------------------------- queue

@cluster
def test_queue_api(ray_cluster):
    queue = Queue(name=unique("api"))
    assert queue.empty() and len(queue) == 0
    assert queue.pop() is None and queue.peek() is None
    assert queue.put({"a": 1}) is True
    assert queue.put(Point(7)) is True
    assert queue.put(lambda x: x + 1) is True
    assert len(queue) == 3 and not queue.empty()
    assert queue.peek() == {"a": 1} and len(queue) == 3
    assert queue.pop() == {"a": 1}
    assert queue.pop().x == 7
    assert queue.pop()(1) == 2
    assert queue.pop() is None and queue.empty()


@cluster
def test_one_named_detached_actor_per_queue_and_map(ray_cluster):
    import ray

    name = unique("named")
    Queue(name=name).put(1)
    Map(name=name)["k"] = 1
    named = ray.util.list_named_actors(all_namespaces=True)
    assert {"name": f"beamray:queue:{name}", "namespace": "beamray"} in named
    assert {"name": f"beamray:map:{name}", "namespace": "beamray"} in named
    actor = ray.get_actor(f"beamray:queue:{name}", namespace="beamray")
    assert ray.get(actor.backend.remote()) == "memory"


@cluster
def test_queue_is_shared_by_name_in_one_process(ray_cluster):
    name = unique("shared")
    Queue(name=name).put("first")
    Queue(name=name).put("second")
    other = Queue(name=name)
    assert [other.pop(), other.pop(), other.pop()] == ["first", "second", None]


@cluster
def test_full_queue_raises_and_loses_nothing(ray_cluster):
    queue = Queue(name=unique("full"), max_size=3)
    for i in range(3):
        queue.put(i)
    with pytest.raises(QueueFullError, match=r"is full: it holds 3 items and max_size is 3; the value was not added"):
        queue.put(3)
    with pytest.raises(SimpleQueueInternalServerError):
        queue.put(3)
    assert len(queue) == 3
    assert queue.pop() == 0
    assert queue.put(3) is True
    assert [queue.pop() for _ in range(4)] == [1, 2, 3, None]


@cluster
def test_queue_max_size_zero_is_unbounded(ray_cluster):
    queue = Queue(name=unique("unbounded"), max_size=0)
    for i in range(150):
        queue.put(i)
    assert len(queue) == 150


# ------------------------------------------------------------------------------------------------ map

@cluster
def test_map_api(ray_cluster):
    dmap = Map(name=unique("api"))
    assert len(dmap) == 0 and list(dmap) == [] and list(dmap.items()) == []
    assert dmap.get("missing") is None and dmap["missing"] is None
    assert dmap.set("a", 1) is True
    dmap["b"] = Point(2)
    dmap["c"] = [1, 2, 3]
    assert dmap["a"] == 1 and dmap.get("b").x == 2
    assert len(dmap) == 3
    assert sorted(dmap) == ["a", "b", "c"]
    assert "a" in dmap and "zzz" not in dmap
    items = dict(dmap.items())
    assert items["a"] == 1 and items["b"].x == 2 and items["c"] == [1, 2, 3]
    dmap["a"] = "overwritten"
    assert dmap["a"] == "overwritten" and len(dmap) == 3
    del dmap["a"]
    assert dmap["a"] is None and len(dmap) == 2
    with pytest.raises(KeyError):
        del dmap["a"]


@cluster
def test_map_accepts_a_one_mib_value(ray_cluster):
    dmap = Map(name=unique("big"))
    value = b"x" * 2**20
    assert dmap.set("big", value) is True
    assert dmap["big"] == value


@cluster
def test_map_ttl_expiry(ray_cluster):
    dmap = Map(name=unique("ttl"))
    dmap.set("short", "gone soon", ttl=1)
    dmap.set("long", "stays")
    dmap.set("never", "stays too", ttl=0)
    assert dmap["short"] == "gone soon" and len(dmap) == 3
    time.sleep(1.3)
    assert dmap["short"] is None
    assert sorted(dmap) == ["long", "never"] and len(dmap) == 2
    assert dict(dmap.items()) == {"long": "stays", "never": "stays too"}
    with pytest.raises(KeyError):
        del dmap["short"]
    dmap.set("short", "back", ttl=60)  # a key set again gets its new TTL
    time.sleep(0.2)
    assert dmap["short"] == "back"


# ----------------------------------------------------------------------------- other drivers and tasks

@function(cpu=0.25)
def produce_in_task(queue_name: str, map_name: str, count: int) -> int:
    queue, dmap = Queue(name=queue_name), Map(name=map_name)
    for i in range(count):
        queue.put(("task", i))
    dmap["from_task"] = {"count": count}
    return count


@function(cpu=0.25)
def drain_in_task(queue_name: str) -> list:
    queue, items = Queue(name=queue_name), []
    while (item := queue.pop()) is not None:
        items.append(item)
    return items


@function(cpu=0.25)
def use_passed_handles(queue: Queue, dmap: Map) -> str:
    queue.put("via argument")
    return dmap["greeting"]


@cluster
def test_queue_and_map_from_remote_tasks(ray_cluster):
    queue_name, map_name = unique("task-q"), unique("task-m")
    assert produce_in_task.remote(queue_name, map_name, 5) == 5
    assert Map(name=map_name)["from_task"] == {"count": 5}
    assert [Queue(name=queue_name).pop() for _ in range(5)] == [("task", i) for i in range(5)]
    for i in range(3):
        Queue(name=queue_name).put(i)
    assert drain_in_task.remote(queue_name) == [0, 1, 2]
    Map(name=map_name)["greeting"] = "hello"
    assert use_passed_handles.remote(Queue(name=queue_name), Map(name=map_name)) == "hello"
    assert Queue(name=queue_name).pop() == "via argument"


@cluster
def test_queue_and_map_across_two_driver_processes(ray_cluster, tmp_path):
    queue_name, map_name = unique("procs-q"), unique("procs-m")
    run_script(tmp_path, """
q, m = Queue(name=sys.argv[1]), Map(name=sys.argv[2])
for i in range(10):
    q.put({"i": i})
m["writer"] = "first driver"
m.set("expiring", 1, ttl=1)
""", queue_name, map_name)
    # The writer has exited: a second driver process sees what it left.
    out = run_script(tmp_path, """
q, m = Queue(name=sys.argv[1]), Map(name=sys.argv[2])
print(json.dumps({"first": [q.pop() for _ in range(5)], "writer": m["writer"], "len": len(q)}))
""", queue_name, map_name)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"first": [{"i": i} for i in range(5)], "writer": "first driver", "len": 5}
    assert [Queue(name=queue_name).pop() for _ in range(6)] == [{"i": i} for i in range(5, 10)] + [None]
    time.sleep(1.1)
    assert list(Map(name=map_name)) == ["writer"]


# ---------------------------------------------------------------------------------- FIFO under load

PRODUCER = """
q = Queue(name=sys.argv[1], max_size=20_000)
tag, count = sys.argv[2], int(sys.argv[3])
for i in range(count):
    q.put((tag, i))
"""

CONSUMER = """
q, m = Queue(name=sys.argv[1]), Map(name=sys.argv[2])
seen = []
while True:
    done = m["producers_done"]  # read BEFORE the pop: an empty pop after it means drained for good
    item = q.pop()
    if item is not None:
        seen.append(item)
    elif done:
        break
    else:
        time.sleep(0.005)
with open(sys.argv[3], "w") as f:
    json.dump(seen, f)
"""


def _consume(queue_name: str, map_name: str, out: list) -> None:
    queue, dmap = Queue(name=queue_name), Map(name=map_name)
    while True:
        done = dmap["producers_done"]
        item = queue.pop()
        if item is not None:
            out.append(list(item))
        elif done:
            return
        else:
            time.sleep(0.005)


@cluster
@pytest.mark.timeout(600)
def test_fifo_with_concurrent_producers_and_consumers_loses_and_duplicates_nothing(ray_cluster, tmp_path):
    """4,000 tagged items from 2 producer processes + 2 producer threads, popped by 2 consumer processes
    and 2 consumer threads: each item seen exactly once, and each producer's items in order per consumer."""
    queue_name, map_name = unique("fifo-q"), unique("fifo-m")
    per_producer = 1000
    Map(name=map_name)["producers_done"] = False
    scripts = {}
    for role, body in (("producer", PRODUCER), ("consumer", CONSUMER)):
        scripts[role] = tmp_path / f"{role}.py"
        scripts[role].write_text(IMPORTS + body)
    consumer_files = [tmp_path / f"consumed-{i}.json" for i in range(2)]
    consumers = [subprocess.Popen([sys.executable, str(scripts["consumer"]), queue_name, map_name, str(path)])
                 for path in consumer_files]
    thread_results: list[list] = [[], []]
    consumer_threads = [threading.Thread(target=_consume, args=(queue_name, map_name, out)) for out in thread_results]
    for thread in consumer_threads:
        thread.start()
    producers = [subprocess.Popen([sys.executable, str(scripts["producer"]), queue_name, f"proc{i}",
                                   str(per_producer)]) for i in range(2)]

    def produce(tag: str) -> None:
        queue = Queue(name=queue_name, max_size=20_000)
        for i in range(per_producer):
            queue.put((tag, i))

    producer_threads = [threading.Thread(target=produce, args=(f"thread{i}",)) for i in range(2)]
    for thread in producer_threads:
        thread.start()
    for thread in producer_threads:
        thread.join()
    assert [p.wait(timeout=400) for p in producers] == [0, 0]
    Map(name=map_name)["producers_done"] = True
    assert [c.wait(timeout=120) for c in consumers] == [0, 0]
    for thread in consumer_threads:
        thread.join(timeout=120)

    per_consumer = [json.loads(path.read_text()) for path in consumer_files] + thread_results
    everything = [tuple(item) for items in per_consumer for item in items]
    tags = ["proc0", "proc1", "thread0", "thread1"]
    assert len(everything) == 4 * per_producer, "items lost or duplicated"
    assert set(everything) == {(tag, i) for tag in tags for i in range(per_producer)}
    for items in per_consumer:
        for tag in tags:
            order = [i for t, i in items if t == tag]
            assert order == sorted(order), f"{tag}'s items out of order at one consumer"
    assert Queue(name=queue_name).empty()


# --------------------------------------------------------------------------------- durability (Redis)

@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@cluster
def wait_for_restart(actor, dashboard_url: str, timeout: float = 60) -> None:
    """``ray.kill`` returns before the actor dies: wait until its replacement is alive."""
    from ray.util.state import get_actor

    actor_id = actor._actor_id.hex()
    deadline = time.monotonic() + timeout
    while True:
        state = get_actor(actor_id, address=dashboard_url)  # not the machine's latest cluster
        if state is not None and state.num_restarts >= 1 and state.state == "ALIVE":
            return
        assert time.monotonic() < deadline, f"actor {actor_id} did not restart: {state}"
        time.sleep(0.2)


def test_redis_backed_actor_restarts_with_its_contents(ray_cluster, redis_url, monkeypatch):
    import ray
    import redis

    from beamray.runtime import kv_actors

    monkeypatch.setenv("BEAMRAY_REDIS_URL", redis_url)  # read when the actors are created
    queue_name, map_name = unique("restart-q"), unique("restart-m")
    queue, dmap = Queue(name=queue_name), Map(name=map_name)
    for i in range(5):
        queue.put(i)
    dmap["kept"] = {"v": 1}
    dmap.set("expiring", 1, ttl=1)
    client = redis.Redis.from_url(redis_url)
    assert client.llen(f"beamray:queue:{queue_name}") == 5
    assert client.hlen(f"beamray:map:{map_name}") == 2

    for kind, name in (("queue", queue_name), ("map", map_name)):
        actor = kv_actors.handle(kind, name)
        assert ray.get(actor.backend.remote()) == "redis"
        ray.kill(actor, no_restart=False)  # Ray restarts it (max_restarts=-1)
        wait_for_restart(actor, ray_cluster["dashboard_url"])

    assert [queue.pop() for _ in range(6)] == [0, 1, 2, 3, 4, None]
    assert dmap["kept"] == {"v": 1}
    time.sleep(1.1)
    assert list(dmap) == ["kept"]
    assert client.hkeys(f"beamray:map:{map_name}") == [b"kept"]  # expired keys are purged from Redis
    assert client.zcard(f"beamray:map-ttl:{map_name}") == 1


@cluster
def test_redis_failure_raises_simple_queue_internal_server_error(ray_cluster, monkeypatch):
    monkeypatch.setenv("BEAMRAY_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    queue = Queue(name=unique("no-redis"))
    with pytest.raises(SimpleQueueInternalServerError, match="ConnectionError"):
        queue.put(1)
    with pytest.raises(BeamrayError, match="ConnectionError"):
        Map(name=unique("no-redis"))["k"] = 1

