"""What a private cluster on a real Redis (``BEAMRAY_REDIS_URL``) keeps across ``beamray cluster down && up``:
finished task records and their results, the pending task and the running one (both complete after it),
and the contents of a ``Queue`` and a ``Map`` (order kept, a TTL entry expired). One restart checks all;
the embedded store's restart is checked by tests/conformance/test_restarts.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import clean_environment, free_port, redis_server

REPO = Path(__file__).resolve().parents[2]

# Driver programs, run in their own processes as a Beam program would be.
IMPORTS = """
import json, sys
try:
    from beamray import Map, Queue
except ImportError:  # until beamray/__init__.py exports them
    from beamray.adapters.map import Map
    from beamray.adapters.queue import Queue
"""
FILL = """
q, m = Queue(name=sys.argv[1]), Map(name=sys.argv[2])
for i in range(20):
    q.put({"i": i})
q.pop()
m["model"] = {"weights": [1, 2, 3]}
m.set("short", "expires", ttl=1)
"""
READ = """
q, m = Queue(name=sys.argv[1]), Map(name=sys.argv[2])
print(json.dumps({"len": len(q), "items": [q.pop() for _ in range(20)], "map": dict(m.items())}))
"""


def beamray(env, *args):
    return subprocess.run([sys.executable, "-m", "beamray.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO)


def run_script(tmp_path: Path, env, body: str, *args: str) -> str:
    script = tmp_path / f"script-{len(list(tmp_path.glob('script-*.py')))}.py"
    script.write_text(IMPORTS + body)
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                            timeout=180, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def redis_url(tmp_path):
    with redis_server(tmp_path) as url:
        yield url


def private_env(tmp_path, redis: str):
    env = clean_environment()
    env.update(BEAMRAY_HOME=str(tmp_path / "home"), BEAMRAY_LOCAL_PORT=str(free_port()),
               BEAMRAY_HTTP_PORT=str(free_port()), BEAMRAY_LOCAL_CPUS="2", BEAMRAY_REDIS_URL=redis)
    return env


def task(base, headers, task_id):
    return httpx.get(f"{base}/v2/task/{task_id}/", headers=headers, timeout=60).json()


def wait_status(base, headers, task_id, status="COMPLETE", timeout=180):
    deadline = time.monotonic() + timeout
    while (seen := task(base, headers, task_id))["status"] != status:
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)
    return seen


@pytest.mark.timeout(600)
def test_tasks_queue_and_map_survive_cluster_down_and_up_with_redis(tmp_path, redis_url):
    env = private_env(tmp_path, redis_url)
    queue_name, map_name = "durable-q", "durable-m"
    try:
        deployed = beamray(env, "deploy", "tests/apps/tasks_app.py:steady", "--json")  # starts the cluster
        assert deployed.returncode == 0, deployed.stderr
        token = json.loads(beamray(env, "config", "show", "--json").stdout)["token"]
        base = f"http://127.0.0.1:{env['BEAMRAY_HTTP_PORT']}"
        headers = {"Authorization": f"Bearer {token}"}

        def enqueue(**payload):
            return httpx.post(f"{base}/taskqueue/steady", json=payload, headers=headers, timeout=60).json()["task_id"]

        run_script(tmp_path, env, FILL, queue_name, map_name)
        ttl_set_at = time.monotonic()
        done = enqueue(tag="before")
        wait_status(base, headers, done)
        blocker = enqueue(seconds=5, tag="blocker")  # one container: the next one waits behind it
        pending = enqueue(tag="pending")
        wait_status(base, headers, blocker, status="RUNNING", timeout=60)
        assert task(base, headers, pending)["status"] == "PENDING"
        assert beamray(env, "cluster", "down").returncode == 0
        assert beamray(env, "cluster", "up").returncode == 0

        finished = task(base, headers, done)
        assert finished["status"] == "COMPLETE" and finished["result"] == {"tag": "before"}
        assert wait_status(base, headers, pending)["result"] == {"tag": "pending"}
        assert wait_status(base, headers, blocker)["result"] == {"tag": "blocker"}
        time.sleep(max(0.0, 1.1 - (time.monotonic() - ttl_set_at)))  # the TTL entry is past its second
        seen = json.loads(run_script(tmp_path, env, READ, queue_name, map_name).strip().splitlines()[-1])
    finally:
        beamray(env, "cluster", "down")
    assert seen["len"] == 19
    assert seen["items"] == [{"i": i} for i in range(1, 20)] + [None]
    assert seen["map"] == {"model": {"weights": [1, 2, 3]}}
