"""``beamray cluster up | status | down`` and ``config show`` on a second, private embedded cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

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
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert json.loads(beamray(private_env, "cluster", "status", "--json").stdout)["running"] is False
    assert "No embedded cluster is running" in beamray(private_env, "cluster", "down").stdout


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
