"""``beamray deploy`` / ``deployment`` through the real CLI on a private embedded cluster. The restore of
running versions (and not stopped ones) after ``cluster down && up`` is checked by
tests/conformance/test_restarts.py."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import clean_environment, free_port

REPO = Path(__file__).resolve().parents[2]


def beamray(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beamray.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def private_env(tmp_path_factory):
    env = clean_environment()
    env.update(BEAMRAY_HOME=str(tmp_path_factory.mktemp("deploy-home")), BEAMRAY_LOCAL_PORT=str(free_port()),
               BEAMRAY_HTTP_PORT=str(free_port()), BEAMRAY_LOCAL_CPUS="2")
    yield env
    beamray(env, "cluster", "down")


def test_deploy_prints_beam_lines_and_a_curl_that_works_as_printed(private_env):
    result = beamray(private_env, "deploy", "tests/apps/web_app.py:multiply")
    assert result.returncode == 0, result.stderr
    assert "=> Deploying endpoint multiply" in result.stdout and "=> Deployed 🎉" in result.stdout
    curl = result.stdout[result.stdout.index("curl "):].replace("\\\n", " ")
    command = shlex.split(curl.replace("-d '{}'", """-d '{"x": 10}'"""))
    answer = subprocess.run(command + ["-s"], capture_output=True, text=True, timeout=60)
    assert json.loads(answer.stdout) == {"result": 20}


def test_deploy_json_and_versions(private_env):
    result = beamray(private_env, "deploy", "tests/apps/web_app.py:multiply", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert set(body) == {"deployment_id", "stub_id", "name", "kind", "version", "url"}
    assert (body["name"], body["kind"], body["version"]) == ("multiply", "endpoint", 2)
    assert body["url"] == f"http://127.0.0.1:{private_env['BEAMRAY_HTTP_PORT']}/endpoint/multiply/v2"


def test_deploy_rejects_bad_targets(private_env):
    assert beamray(private_env, "deploy", "tests/apps/web_app.py").returncode == 2
    assert beamray(private_env, "deploy", "tests/apps/missing.py:x").returncode == 2
    not_web = beamray(private_env, "deploy", "tests/apps/web_app.py:load_model")
    assert not_web.returncode == 2 and "not a deployable Beam object" in not_web.stderr


def test_deployment_list_stop_and_delete(private_env):
    listed = json.loads(beamray(private_env, "deployment", "list", "--json").stdout)
    assert [(d["name"], d["version"], d["status"]) for d in listed] == [
        ("multiply", 1, "running"), ("multiply", 2, "running")]
    stopped = beamray(private_env, "deployment", "stop", "multiply:v1")
    assert stopped.returncode == 0 and "Stopped multiply v1" in stopped.stdout
    listed = json.loads(beamray(private_env, "deployment", "list", "--json").stdout)
    assert [(d["name"], d["version"], d["status"]) for d in listed] == [
        ("multiply", 1, "stopped"), ("multiply", 2, "running")]

    token = json.loads(beamray(private_env, "config", "show", "--json").stdout)["token"]
    port = private_env["BEAMRAY_HTTP_PORT"]
    headers = {"Authorization": f"Bearer {token}"}
    running = httpx.post(f"http://127.0.0.1:{port}/endpoint/multiply/v2", json={"x": 3}, headers=headers,
                         timeout=60)
    assert running.status_code == 200 and running.json() == {"result": 6}
    assert httpx.post(f"http://127.0.0.1:{port}/endpoint/multiply/v1", json={"x": 3}, headers=headers,
                      timeout=60).status_code == 404  # a stopped version stops answering

    deleted = beamray(private_env, "deployment", "delete", "multiply")
    assert deleted.returncode == 0 and deleted.stdout.count("Deleted multiply") == 2
    assert json.loads(beamray(private_env, "deployment", "list", "--json").stdout) == []
    missing = beamray(private_env, "deployment", "stop", "multiply")
    assert missing.returncode == 1 and "no deployment matches" in missing.stderr
