"""Beam's client objects (``beam.Client``, ``Deployment``, ``Task``) from a script that only reaches the
gateway: an empty ``BEAMRAY_HOME`` and the gateway's URL in ``BEAMRAY_GATEWAY_URL``, real HTTP throughout.

SDK: beam-api.md §8 (client objects); docs: Querying Task Status.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.conformance.support import deployed, gateway, remove, token


@pytest.fixture(scope="module")
def elsewhere(user, tmp_path_factory):
    """The environment of a machine that knows only the gateway's address."""
    home = tmp_path_factory.mktemp("elsewhere")
    return {"BEAMRAY_HOME": str(home / ".beamray"), "BEAMRAY_GATEWAY_URL": str(gateway(user).base_url)}


def run_client(user, elsewhere, *args: str, check: bool = True):
    project = user.project("clients_script", folder=f"clients_script_{uuid.uuid4().hex[:6]}")
    return user.beamray("run", "app.py", *args, cwd=project, env=elsewhere, check=check)


@pytest.fixture(scope="module")
def shout(user):
    """The task queue the script submits to, deployed once for the module."""
    yield user.deploy(user.project("clients_queue"), "app.py:shout")
    remove(user, "shout")


def test_client_submits_follows_and_reads_tasks_and_deployments(user, elsewhere, shout):
    with deployed(user, user.project("clients_endpoint"), "app.py:multiply") as endpoint:
        lines = [json.loads(line) for line in run_client(user, elsewhere, token(user), "shout",
                                                         "multiply").stdout.splitlines()]
    submitted, waited, found, again, by_name, by_kind, subscribed, uploaded = lines
    assert submitted["type"] == "Task" and submitted["status"] in {"PENDING", "RUNNING", "COMPLETE"}
    assert (waited["result"], waited["status"]) == ({"shout": "HELLO"}, "COMPLETE")
    [output] = waited["outputs"]
    assert output["name"] == "shout.txt"
    assert httpx.get(output["url"], timeout=30).text == "HELLO"
    assert found == {"found": True, "result": {"shout": "HELLO"}, "complete": True}
    assert again == {"again": "COMPLETE"}
    assert by_name == {"url": endpoint["url"], "answer": {"result": 42}}
    assert by_kind == {"answer": {"result": 4}}
    assert subscribed["subscribed"] == {"shout": "AGAIN"}
    assert subscribed["events"][-1] == "COMPLETE"
    assert httpx.get(uploaded["upload"], timeout=30).text == "uploaded through beam.Client"


def test_client_with_a_wrong_token_says_so_in_one_line(user, elsewhere, shout):
    result = run_client(user, elsewhere, "not-the-token", "shout", "multiply", check=False)
    assert result.returncode == 1
    assert "refused the token (401 Unauthorized)" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_deployment_and_task_raise_the_sdks_errors(user, elsewhere):
    project = user.project("clients_script", folder="clients_missing")
    (project / "missing.py").write_text(
        "import sys\n"
        "from beam import Client\n"
        "client = Client(token=sys.argv[1])\n"
        "try:\n    client.get_deployment('no-such-app')\nexcept Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "try:\n    client.get_task_by_id('00000000-0000-0000-0000-000000000000')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    out = user.beamray("run", "missing.py", token(user), cwd=project, env=elsewhere).stdout.splitlines()
    assert out[0].startswith("DeploymentNotFoundError Deployment 'no-such-app' not found"), out
    assert out[1] == "TaskNotFoundError task 00000000-0000-0000-0000-000000000000 not found", out


def test_identifiers_may_name_the_kind_as_beams_slugs_do():
    from beamray.adapters.client import _split_kind

    assert _split_kind("multiply") == (None, "multiply")
    assert _split_kind("endpoint/multiply/v2") == ("endpoint", "multiply/v2")
    assert _split_kind("me/taskqueue/shout/v1") == ("taskqueue", "shout/v1")
    assert _split_kind("multiply:v3") == (None, "multiply:v3")
