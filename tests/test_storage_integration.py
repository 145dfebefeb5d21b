"""Volumes through ``@function(volumes=…)`` and Outputs served by the gateway, on the session cluster."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest

from beamray import config
from beamray import deploy
from beamray.tasks import client
from tests.apps import storage_app

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[1]


def test_a_volume_is_shared_by_tasks_and_persists_between_runs(ray_cluster):
    assert "a.txt" in storage_app.write_note.remote("a.txt", "first")
    assert "b.txt" in storage_app.write_note.remote("b.txt", "second")
    assert storage_app.read_note.remote("a.txt") == "first"
    assert list(storage_app.read_note.map(["a.txt", "b.txt"])) == ["first", "second"]


def test_task_output_is_listed_and_served_through_a_signed_expiring_link(ray_cluster):
    deploy.ensure_serve()
    handle = storage_app.report
    deploy.deploy(handle.parent.spec_for(handle.func), code_root=REPO)
    task = handle.put(text="hello output")
    result = task.result(wait=True)
    url = result["url"]
    assert url.startswith(f"http://127.0.0.1:{config.http_port()}/output/id/")
    assert httpx.get(url, timeout=60).content == b"hello output"

    listed = client.get(task.id)["outputs"]
    assert [item["name"] for item in listed] == ["report.txt"] and listed[0]["expires_in"] > 0
    assert httpx.get(listed[0]["url"], timeout=60).content == b"hello output"

    parts = urlparse(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    tampered = parts._replace(query=urlencode({**query, "sig": "0" * len(query["sig"])})).geturl()
    assert httpx.get(tampered, timeout=60).status_code == 403
    expired = parts._replace(query=urlencode({**query, "expires": str(int(time.time()) - 10)})).geturl()
    assert httpx.get(expired, timeout=60).status_code == 403
