"""Task records and pending tasks survive ``beamray cluster down && up`` (embedded store and Redis)."""

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


def beamray(env, *args):
    return subprocess.run([sys.executable, "-m", "beamray.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO)


@pytest.fixture
def redis_url(tmp_path):
    with redis_server(tmp_path) as url:
        yield url


def private_env(tmp_path, redis: str | None):
    env = clean_environment()
    env.update(BEAMRAY_HOME=str(tmp_path / "home"), BEAMRAY_LOCAL_PORT=str(free_port()),
               BEAMRAY_HTTP_PORT=str(free_port()), BEAMRAY_LOCAL_CPUS="2")
    if redis:
        env["BEAMRAY_REDIS_URL"] = redis
    return env


def wait_status(base, headers, task_id, status="COMPLETE", timeout=180):
    deadline = time.monotonic() + timeout
    while (task := httpx.get(f"{base}/v2/task/{task_id}/", headers=headers, timeout=60).json())["status"] != status:
        assert time.monotonic() < deadline, task
        time.sleep(0.2)
    return task


def check_survives_restart(env):
    try:
        deployed = beamray(env, "deploy", "tests/apps/tasks_app.py:steady", "--json")
        assert deployed.returncode == 0, deployed.stderr
        token = json.loads(beamray(env, "config", "show", "--json").stdout)["token"]
        base = f"http://127.0.0.1:{env['BEAMRAY_HTTP_PORT']}"
        headers = {"Authorization": f"Bearer {token}"}

        def enqueue(**payload):
            return httpx.post(f"{base}/taskqueue/steady", json=payload, headers=headers, timeout=60).json()["task_id"]

        done = enqueue(tag="before")
        wait_status(base, headers, done)
        blocker = enqueue(seconds=2, tag="blocker")  # one container: the next one waits behind it
        pending = enqueue(tag="pending")
        assert beamray(env, "cluster", "down").returncode == 0
        assert beamray(env, "cluster", "up").returncode == 0

        finished = httpx.get(f"{base}/v2/task/{done}/", headers=headers, timeout=60).json()
        assert finished["status"] == "COMPLETE" and finished["result"] == {"tag": "before"}
        assert wait_status(base, headers, pending)["result"] == {"tag": "pending"}
        assert wait_status(base, headers, blocker)["result"] == {"tag": "blocker"}
    finally:
        beamray(env, "cluster", "down")


def test_finished_tasks_and_the_queue_survive_restart_with_the_embedded_store(tmp_path):
    check_survives_restart(private_env(tmp_path, None))


def test_finished_tasks_and_the_queue_survive_restart_with_redis(tmp_path, redis_url):
    check_survives_restart(private_env(tmp_path, redis_url))
