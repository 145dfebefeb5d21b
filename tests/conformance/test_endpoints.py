"""Beam's ``@endpoint`` examples, deployed with ``beamray deploy`` and called over real HTTP.

Docs: Creating a Web Endpoint, Core Concepts › Endpoints, Keeping Containers Warm, Public Endpoints,
Pre-Loading Models, Sending File Payloads, Container Images, Integrate into CI/CD, Task Callbacks
(request level), GPU Acceleration.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conformance.conftest import wait_for
from tests.conformance.support import (
    CallbackReceiver, check_callback, deployed, ensure_emulated_gpus, gateway, remove, token,
)


@pytest.fixture(scope="module", autouse=True)
def emulated_gpus(user):
    """The GPU examples below ask for H100 and A10G: the cluster emulates them."""
    ensure_emulated_gpus(user)


def test_deploy_prints_the_invocation_and_its_curl_answers_the_docs_result(user):
    project = user.project("multiply")
    try:
        output = user.beamray("deploy", "app.py:multiply", cwd=project).stdout
        assert "=> Deployed 🎉" in output.splitlines()
        assert "=> Invocation details" in output.splitlines()
        assert f"-H 'Authorization: Bearer {token(user)}'" in output
        url = re.search(r"curl -X POST '([^']+)'", output).group(1)
        assert re.search(r"/endpoint/multiply/v\d+$", url), url

        headers = {"Connection": "keep-alive", "Content-Type": "application/json",
                   "Authorization": f"Bearer {token(user)}"}  # the docs' Python example
        response = httpx.post(url, headers=headers, json={"x": 10}, timeout=60)
        assert response.status_code == 200
        assert response.json() == {"result": 20}
        assert httpx.post(url, json={"x": 10}, timeout=60).status_code == 401  # private by default
    finally:
        remove(user, "multiply")


def test_two_projects_with_the_same_app_py_handler_answer_their_own_results(user):
    one = user.project("quickstart_endpoint", folder="one")  # returns {}
    two = user.project("always_on", folder="two")  # returns {"success": "true"}, min_containers=1
    http = gateway(user)
    with deployed(user, one, "app.py:handler", "--name", "one") as first, \
            deployed(user, two, "app.py:handler", "--name", "two") as second:
        assert (first["name"], first["kind"], second["name"], second["kind"]) == ("one", "endpoint", "two", "endpoint")
        for url in (first["url"], "/endpoint/one", "/endpoint/one/latest"):
            response = http.post(url, json={})
            assert (response.status_code, response.json()) == (200, {}), url
        for url in (second["url"], "/endpoint/two", f"/endpoint/id/{second['stub_id']}"):
            response = http.post(url, json={})
            assert (response.status_code, response.json()) == (200, {"success": "true"}), url


def test_functions_called_by_two_projects_endpoints_run_in_their_own_projects_code(user):
    """Each ``.remote()`` from a replica runs with the caller's project (its modules, its working
    directory), even when Ray hands both projects' calls to the same worker process in turn."""
    projects = {}
    for folder in ("first", "second"):
        projects[folder] = user.project("calls_function", folder=f"calls-{folder}")
        (projects[folder] / "helpers.py").write_text(f'WORD = "{folder}"\n')
        (projects[folder] / "word.txt").write_text(f"{folder} file\n")
    http = gateway(user)
    with deployed(user, projects["first"], "app.py:handler", "--name", "callsfirst") as first, \
            deployed(user, projects["second"], "app.py:handler", "--name", "callssecond") as second:
        for turn in range(4):
            for folder, deployment in (("first", first), ("second", second)):
                response = http.post(deployment["url"], json={"text": f"t{turn}"})
                assert response.status_code == 200, response.text
                assert response.json() == {"said": f"{folder}:{folder} file:t{turn}"}


def test_public_endpoint_answers_without_a_token_at_its_public_url(user):
    project = user.project("public_endpoint")
    with deployed(user, project, "app.py:create_public_endpoint") as deployment:
        assert deployment["url"].endswith(f"/endpoint/public/{deployment['stub_id']}")
        response = httpx.post(deployment["url"], headers={"Connection": "keep-alive",
                                                          "Content-Type": "application/json"}, json={}, timeout=60)
        assert response.status_code == 200
        assert response.json() == {"success": "true"}


def test_keep_warm_endpoint_answers_and_every_warmup_url_returns_200(user):
    project = user.project("keep_warm")
    http = gateway(user)
    with deployed(user, project, "app.py:handler", "--name", "keep-warm") as deployment:
        assert http.post(deployment["url"], json={}).json() == {}
        version = deployment["version"]
        for url in (f"/endpoint/id/{deployment['stub_id']}/warmup", "/endpoint/keep-warm/warmup",
                    "/endpoint/keep-warm/latest/warmup", f"/endpoint/keep-warm/v{version}/warmup"):
            response = http.post(url)
            assert (response.status_code, response.content) == (200, b""), url


def test_on_start_value_reaches_the_handler_context(user):
    project = user.project("on_start_context")
    with deployed(user, project, "app.py:handler", "--name", "on-start") as deployment:
        response = gateway(user).post(deployment["url"], json={})
        assert (response.status_code, response.json()) == (200, {})


def test_base64_image_payload_is_decoded_by_the_endpoint(user):
    picture = io.BytesIO()
    Image.new("RGB", (8, 8), color="blue").save(picture, format="PNG")  # ./cool-picture.png
    b64_image = base64.b64encode(picture.getvalue()).decode("utf-8")
    project = user.project("image_base64")
    with deployed(user, project, "app.py:image_endpoint") as deployment:
        assert deployment["name"] == "image_endpoint"
        response = gateway(user).post(deployment["url"], headers={"Connection": "keep-alive"},
                                      json={"image": b64_image})
        assert response.status_code == 200
        assert response.json() == {"message": "Image processed successfully"}


def test_requirements_txt_image_endpoint_answers(user):
    project = user.project("requirements_image")  # Image(python_version="python3.11", python_packages=...)
    with deployed(user, project, "app.py:handler", "--name", "requirements-image") as deployment:
        response = gateway(user).post(deployment["url"], json={})
        assert (response.status_code, response.json()) == (200, {})


def test_app_name_follows_the_deploy_environment(user):
    project = user.project("deploy_env")
    result = user.beamray("deploy", "app.py:handler", "--json", cwd=project, env={"BEAM_DEPLOY_ENV": "prod"})
    deployment = json.loads(result.stdout)
    try:
        assert deployment["name"] == "app-prod"
        assert re.search(r"/endpoint/app-prod/v\d+$", deployment["url"]), deployment
        response = gateway(user).post("/endpoint/app-prod", json={})
        assert (response.status_code, response.json()) == (200, {})
    finally:
        remove(user, deployment["name"])


def test_request_level_callback_url_gets_the_endpoint_result(user):
    # "Callbacks can be added onto endpoints, functions, and task queues" + "Request Level Callbacks".
    project = user.project("request_callback")
    with CallbackReceiver() as receiver, \
            deployed(user, project, "app.py:handler", "--name", "request-callback") as deployment:
        response = gateway(user).post(deployment["url"], json={"callback_url": receiver.url})
        assert (response.status_code, response.json()) == (200, {"response": "true"})
        request = receiver.first(timeout=10)
        assert json.loads(request["body"]) == {"data": {"response": "true"}}
        check_callback(user, request, "COMPLETE")


def test_gpu_endpoint_runs_on_an_h100(user):
    project = user.project("gpu_h100")
    with deployed(user, project, "app.py:handler", "--name", "gpu-h100") as deployment:
        response = gateway(user).post(deployment["url"], json={})
        assert (response.status_code, response.json()) == (200, {"gpu": "true"})


def test_endpoint_with_two_a10g_gpus_answers(user):
    project = user.project("multi_gpu")
    with deployed(user, project, "app.py:handler", "--name", "multi-gpu") as deployment:
        response = gateway(user).post(deployment["url"], json={})
        assert (response.status_code, response.json()) == (200, {"hello": "world"})


def test_fastapi_app_serves_its_routes_under_the_asgi_url(user):
    project = user.project("fastapi_server")
    http = gateway(user)
    with deployed(user, project, "app.py:web_server") as deployment:
        assert deployment["kind"] == "asgi"
        assert re.search(r"/asgi/fastapi-server/v\d+$", deployment["url"]), deployment["url"]
        response = http.post(f"{deployment['url']}/hello", json={})
        assert (response.status_code, response.json()) == (200, {"hello": "world"})
        response = http.get("/asgi/fastapi-server/items/7", params={"q": "beam"})
        assert (response.status_code, response.json()) == (200, {"item_id": 7, "q": "beam"})
        assert http.get(f"{deployment['url']}/items/not-a-number").status_code == 422  # FastAPI's validation
        assert httpx.post(f"{deployment['url']}/hello", json={}, timeout=60).status_code == 401


def _streamed(http, url: str, marker: Path) -> list[str]:
    """The stream's lines; the marker is written only once the first line has arrived (a buffered hop
    would hold it back, and the app would then say so)."""
    lines = []
    with http.stream("GET", url, params={"marker": str(marker)}) as response:
        assert response.status_code == 200, url
        for line in response.iter_lines():
            lines.append(line)
            marker.touch()
    marker.unlink()
    return lines


def test_alias_urls_reach_the_latest_version_and_stream_as_versioned_ones_do(user, tmp_path):
    project = user.project("versioned_stream")
    http = gateway(user)
    marker = tmp_path / "first-chunk-read"
    with deployed(user, project, "app.py:web_server") as first:
        (project / "version.txt").write_text("2\n")
        with deployed(user, project, "app.py:web_server") as second:
            old, new = first["version"], second["version"]
            expected = {"/asgi/versions": "2", "/asgi/versions/latest": "2", f"/asgi/versions/v{new}": "2",
                        f"/asgi/versions/v{old}": "1"}
            for prefix, version in expected.items():
                response = http.get(f"{prefix}/version")
                assert (response.status_code, response.json()) == (200, {"version": version}), prefix
            assert http.get(f"/asgi/versions/v{new + 5}/version").status_code == 404
            response = http.get(f"/asgi/id/{second['stub_id']}/version")  # through the gateway
            assert (response.status_code, response.json()) == (200, {"version": "2"})
            for prefix in ("/asgi/versions", f"/asgi/versions/v{old}"):
                assert _streamed(http, f"{prefix}/stream", marker) == ["first", "second"], prefix
            user.beamray("deployment", "stop", second["deployment_id"])
            response = wait_for(lambda: (r := http.get("/asgi/versions/version")).json() == {"version": "1"} and r,
                                what="the alias to reach v1 once v2 stopped")
            assert response.status_code == 200
            assert _streamed(http, "/asgi/versions/stream", marker) == ["first", "second"]
