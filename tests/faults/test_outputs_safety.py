"""Output links on the gateway's origin: task-named files never render as active content, bodies stream
in chunks, malformed signatures are 403s (not 500s), and the gateway itself removes expired outputs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from beamray import outputs, storage
from tests import test_storage

moto_url, s3_env, storage_env = test_storage.moto_url, test_storage.s3_env, test_storage.storage_env
TASK_ID = "fedcba9876543210fedcba9876543210"


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, storage_env: Path) -> str:
    if request.param == "s3":
        request.getfixturevalue("s3_env")
    return request.param


def saved(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return outputs.store_output(TASK_ID, path)


def link(output_id: str, expires_in: int = 300) -> str:
    until = int(time.time()) + expires_in
    return f"expires={until}&sig={outputs.sign(output_id, until)}"


def header(response: dict, name: bytes) -> bytes | None:
    return dict(response["headers"]).get(name)


def test_non_ascii_signature_is_refused_not_a_crash(storage_env: Path, tmp_path: Path) -> None:
    output_id = saved(tmp_path, "f.txt", b"x")
    until = int(time.time()) + 300
    assert outputs.verify(output_id, until, "\u00e9" * 64) is False
    response = outputs.http_response(output_id, f"expires={until}&sig=%C3%A9")
    assert response["status"] == 403 and b"invalid or expired" in response["body"]


@pytest.mark.parametrize("name, content_type, disposition", [
    ("page.html", b"application/octet-stream", b"attachment"),
    ("drawing.svg", b"application/octet-stream", b"attachment"),
    ("script.js", b"application/octet-stream", b"attachment"),
    ("noext", b"application/octet-stream", b"attachment"),
    ("image.png", b"image/png", b"inline"),
    ("notes.txt", b"text/plain", b"inline"),
    ("data.json", b"application/json", b"inline"),
])
def test_only_safe_types_are_inline_and_nothing_is_sniffed(storage_env: Path, tmp_path: Path, name: str,
                                                           content_type: bytes, disposition: bytes) -> None:
    output_id = saved(tmp_path, name, b"<script>alert(1)</script>")
    response = outputs.http_response(output_id, link(output_id))
    assert response["status"] == 200
    assert header(response, b"content-type") == content_type
    assert header(response, b"content-disposition").startswith(disposition + b"; filename*=UTF-8''")
    assert header(response, b"x-content-type-options") == b"nosniff"
    assert b"".join(response["body"]) == b"<script>alert(1)</script>"


def test_body_is_read_in_chunks_on_both_backends(backend: str, tmp_path: Path) -> None:
    data = os.urandom(outputs.CHUNK_BYTES * 2 + 123)
    output_id = saved(tmp_path, "big.bin", data)
    response = outputs.http_response(output_id, link(output_id))
    assert not isinstance(response["body"], bytes)
    chunks = list(response["body"])
    assert len(chunks) == 3 and all(len(chunk) <= outputs.CHUNK_BYTES for chunk in chunks)
    assert b"".join(chunks) == data and header(response, b"content-length") == str(len(data)).encode()


# --- through the session cluster's gateway ------------------------------------------------------------


@pytest.mark.cluster
def test_gateway_serves_outputs_as_safe_streamed_downloads(gateway, tmp_path: Path) -> None:
    page = saved(tmp_path, "page.html", b"<script>document.cookie</script>")
    response = gateway.get(f"/output/id/{page}?{link(page)}")
    assert response.status_code == 200 and response.content == b"<script>document.cookie</script>"
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["x-content-type-options"] == "nosniff"
    data = os.urandom(3 * outputs.CHUNK_BYTES + 7)
    big = saved(tmp_path, "big.bin", data)
    assert gateway.get(f"/output/id/{big}?{link(big)}").content == data
    until = int(time.time()) + 300
    bad = gateway.get(f"/output/id/{page}?expires={until}&sig=%C3%A9")
    assert bad.status_code == 403 and bad.json() == {"error": "invalid or expired output URL"}


@pytest.mark.cluster
def test_gateway_removes_expired_outputs_by_itself(gateway, tmp_path: Path, monkeypatch) -> None:
    from ray import serve

    from beamray.serve_bridge import apps

    kept = saved(tmp_path, "kept.txt", b"kept")
    monkeypatch.setenv("BEAMRAY_OUTPUT_RETENTION_S", "0")
    expired = saved(tmp_path, "expired.txt", b"gone")
    store = storage.get_storage()
    assert store.exists(f"outputs/index/{expired}.json")
    serve.delete(apps.GATEWAY_APP)  # a fresh gateway cleans up at once, then every few minutes
    apps.start_serve()
    deadline = time.monotonic() + 30
    while store.exists(f"outputs/index/{expired}.json"):
        assert time.monotonic() < deadline, "the expired output is still there"
        time.sleep(0.2)
    assert not store.exists(f"outputs/{TASK_ID}/{expired}/expired.txt")
    assert store.exists(f"outputs/index/{kept}.json")
    assert gateway.get(f"/output/id/{kept}?{link(kept)}").content == b"kept"
