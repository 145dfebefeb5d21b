"""``beamray cluster up | status | down`` and ``config show`` on a second, private embedded cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import clean_environment, free_port


def beamray(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beamray.cli", *args], capture_output=True, text=True,
                          timeout=180, env=env)


@pytest.fixture
def private_env(tmp_path):
    env = clean_environment()
    env.update(BEAMRAY_HOME=str(tmp_path / "home"), BEAMRAY_LOCAL_PORT=str(free_port()),
               BEAMRAY_HTTP_PORT=str(free_port()))
    yield env
    beamray(env, "cluster", "down")


def test_cluster_up_status_down_cycle(private_env):
    up = beamray(private_env, "cluster", "up", "--num-cpus", "3", "--resources", '{"RTX4090": 1}')
    assert up.returncode == 0, up.stderr
    assert "=> Cluster started at 127.0.0.1:" in up.stdout

    again = beamray(private_env, "cluster", "up")
    assert "=> Cluster already running" in again.stdout

    status = json.loads(beamray(private_env, "cluster", "status", "--json").stdout)
    assert status["running"] and status["embedded"]
    assert status["resources"]["CPU"] == 3 and status["resources"]["RTX4090"] == 1
    assert status["address"] == f"127.0.0.1:{private_env['BEAMRAY_LOCAL_PORT']}"

    shown = json.loads(beamray(private_env, "config", "show", "--json").stdout)
    assert set(shown) == {"address", "dashboard_url", "gateway_url", "token"}
    assert shown["gateway_url"] == f"http://127.0.0.1:{private_env['BEAMRAY_HTTP_PORT']}"
    assert len(shown["token"]) >= 32 and shown["address"] == status["address"]

    pid = status["pid"]
    down = beamray(private_env, "cluster", "down")
    assert down.returncode == 0 and "=> Cluster stopped" in down.stdout
    assert _exited(pid)  # stop_embedded returns once the head has exited
    assert json.loads(beamray(private_env, "cluster", "status", "--json").stdout)["running"] is False
    assert "No embedded cluster is running" in beamray(private_env, "cluster", "down").stdout


def _exited(pid: int) -> bool:
    """Gone, or a zombie: an orphaned head that exited waits for an init that may never reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"


def test_cluster_up_rejects_bad_resources_json(private_env):
    result = beamray(private_env, "cluster", "up", "--resources", "{not json")
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def test_unreachable_address_fails_fast_with_a_clear_error(private_env):
    private_env["BEAMRAY_ADDRESS"] = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = beamray(private_env, "cluster", "status")
    assert result.returncode == 1
    assert "no Ray cluster answers at" in result.stderr
    assert time.monotonic() - started < 30


def test_config_set_and_unset_address(private_env):
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    assert beamray(private_env, "config", "set", "address", nowhere).returncode == 0
    result = beamray(private_env, "config", "show", "--json")
    shown = json.loads(result.stdout)
    assert shown["address"] == nowhere and shown["token"] is None  # it lives on the unreachable cluster
    assert "no Ray cluster answers" in result.stderr
    assert beamray(private_env, "config", "unset", "address").returncode == 0
    assert json.loads(beamray(private_env, "config", "show", "--json").stdout)["address"] is None
    assert beamray(private_env, "config", "set", "http_port", "abc").returncode == 2


def listeners_on(port: int) -> list[str]:
    output = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[3] for line in output.splitlines() if line.split()[3].endswith(f":{port}")]


@pytest.mark.parametrize("ingress", ["haproxy", "proxy"])
def test_each_ingress_serves_endpoints_with_auth_on_loopback(private_env, ingress):
    """Serve's Python proxy is the default; HAProxy is ``BEAMRAY_SERVE_INGRESS=haproxy``."""
    haproxy_env = dict(private_env, BEAMRAY_SERVE_INGRESS=ingress) if ingress == "haproxy" else dict(private_env)
    assert beamray(haproxy_env, "cluster", "up").returncode == 0
    status = json.loads(beamray(haproxy_env, "cluster", "status", "--json").stdout)
    assert status["ingress"] == ingress
    state = json.loads((Path(haproxy_env["BEAMRAY_HOME"]) / "cluster.json").read_text())
    files = Path(state["haproxy_files"]) if ingress == "haproxy" else None

    deployed = beamray(haproxy_env, "deploy", "tests/apps/web_app.py:multiply", "--json")
    assert deployed.returncode == 0, deployed.stderr
    url = json.loads(deployed.stdout)["url"]
    token = json.loads(beamray(haproxy_env, "config", "show", "--json").stdout)["token"]
    with httpx.Client(timeout=60) as client:
        answer = client.post(url, json={"x": 10}, headers={"Authorization": f"Bearer {token}"})
        assert (answer.status_code, answer.json()) == (200, {"result": 20})
        assert client.post(url, json={"x": 10}).status_code == 401
        assert client.post(url, json={"x": 10}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        alias = url.rsplit("/v", 1)[0]
        assert client.post(alias, json={"x": 2}, headers={"Authorization": f"Bearer {token}"}).json() == {"result": 4}

    port = int(haproxy_env["BEAMRAY_HTTP_PORT"])
    assert listeners_on(port) == [f"127.0.0.1:{port}"]  # the ingress took the gateway port, on loopback only
    if files is not None:
        assert any(path.name == "haproxy.cfg" for path in files.rglob("haproxy.cfg"))

    os.kill(state["pid"], signal.SIGKILL)  # a crash of the head: nothing it started may keep the port
    deadline = time.monotonic() + 30
    while listeners_on(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert listeners_on(port) == []
    assert beamray(haproxy_env, "cluster", "down").returncode == 0
    assert files is None or not files.exists()


def test_an_unknown_ingress_is_refused_before_anything_starts(private_env):
    result = beamray(dict(private_env, BEAMRAY_SERVE_INGRESS="nginx"), "cluster", "up")
    assert result.returncode != 0
    assert "BEAMRAY_SERVE_INGRESS='nginx' is not one of proxy, haproxy" in result.stderr
    assert not (Path(private_env["BEAMRAY_HOME"]) / "cluster.json").exists()
