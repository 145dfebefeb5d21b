"""``Output``: the SDK's errors, save/stat/exists, signed local URLs (verify, open_output, the gateway's
response), presigned S3 URLs fetched over HTTP from a real moto server, expiry, tampering, cleanup."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from PIL import Image as PILImage

from beamray import storage
from beamray import outputs
from beamray.adapters.output import (Output, OutputCannotRunLocallyError, OutputNotFoundError, OutputNotSavedError,
                                     OutputTaskIdError, Stat)
from tests import test_storage

# the storage fixtures, shared with test_storage.py and test_volumes.py
moto_url, s3_env, storage_env = test_storage.moto_url, test_storage.s3_env, test_storage.storage_env


@pytest.fixture
def in_task(storage_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Inside a task: CONTAINER_ID and TASK_ID set, gateway on a known port."""
    task_id = "0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("CONTAINER_ID", "function-abc-123")
    monkeypatch.setenv("TASK_ID", task_id)
    monkeypatch.setenv("BEAMRAY_HTTP_PORT", "8123")
    return task_id


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, in_task: str) -> str:
    if request.param == "s3":
        request.getfixturevalue("s3_env")
    return request.param


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlparse(url).query).items()}


def test_output_refuses_to_run_outside_a_task(storage_env: Path, monkeypatch, tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    monkeypatch.delenv("CONTAINER_ID", raising=False)
    with pytest.raises(OutputCannotRunLocallyError):
        Output(path=path)
    monkeypatch.setenv("CONTAINER_ID", "c1")
    monkeypatch.delenv("TASK_ID", raising=False)
    with pytest.raises(OutputTaskIdError):
        Output(path=path)
    monkeypatch.setenv("TASK_ID", "t1")
    with pytest.raises(FileNotFoundError):
        Output(path=tmp_path / "missing.txt")


def test_unsaved_output_has_no_id_url_or_stat(in_task: str, tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    output = Output(path=str(path))
    assert (output.id, output.path, output.task_id) == (None, path, in_task)
    assert output.exists() is False
    with pytest.raises(OutputNotSavedError):
        output.public_url()
    with pytest.raises(OutputNotSavedError):
        output.stat()


def test_save_stores_under_outputs_task_id(backend: str, in_task: str, tmp_path: Path) -> None:
    path = tmp_path / "result.txt"
    path.write_text("This is an output, a glorious text file.")
    output = Output(path=path)
    assert output.save() is output and output.id
    key = f"outputs/{in_task}/{output.id}/result.txt"
    assert storage.get_storage().read_bytes(key) == path.read_bytes()
    stat = output.stat()
    assert isinstance(stat, Stat) and stat.size == path.stat().st_size and stat.mode.startswith("-rw")
    assert set(stat.to_dict()) == {"mode", "size", "atime", "mtime"}
    assert output.exists() is True


def test_directory_is_zipped(backend: str, in_task: str, tmp_path: Path) -> None:
    directory = tmp_path / "waveforms"
    (directory / "sub").mkdir(parents=True)
    (directory / "a.wav").write_bytes(b"RIFF")
    (directory / "sub" / "b.wav").write_bytes(b"RIFF2")
    output = Output(path=directory).save()
    data = storage.get_storage().read_bytes(f"outputs/{in_task}/{output.id}/waveforms.zip")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["a.wav", "sub/b.wav"]
        assert archive.read("sub/b.wav") == b"RIFF2"


def test_local_public_url_is_signed_and_served(in_task: str, tmp_path: Path) -> None:
    path = tmp_path / "my_output.txt"
    path.write_bytes(b"payload")
    output = Output(path=path).save()
    url = outputs.public_url(output.id, expires=400)  # the adapter also starts the gateway: test_first_run.py
    assert url.startswith(f"http://127.0.0.1:8123/output/id/{output.id}?expires=")
    query = _query(url)
    assert abs(int(query["expires"]) - (time.time() + 400)) < 5
    assert outputs.verify(output.id, query["expires"], query["sig"])
    name, stream, size = outputs.open_output(output.id)
    with stream:
        assert name == "my_output.txt" and stream.read() == b"payload" and size == len(b"payload")
    response = outputs.http_response(output.id, urlparse(url).query.encode())
    assert response["status"] == 200 and b"".join(response["body"]) == b"payload"
    assert (b"content-type", b"text/plain") in response["headers"]
    assert (b"x-content-type-options", b"nosniff") in response["headers"]
    # served over HTTP by the session cluster's gateway: tests/faults/test_outputs_safety.py


def test_tampered_or_expired_local_urls_are_refused(in_task: str, tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    output = Output(path=path).save()
    other = Output(path=path).save()
    query = _query(outputs.public_url(output.id, expires=60))
    expires, sig = query["expires"], query["sig"]
    assert not outputs.verify(output.id, str(int(expires) + 1000), sig)  # longer expiry
    assert not outputs.verify(other.id, expires, sig)  # another output
    assert not outputs.verify(output.id, expires, sig[:-1] + ("0" if sig[-1] != "0" else "1"))
    assert not outputs.verify(output.id, "soon", sig) and not outputs.verify(output.id, expires, None)
    assert not outputs.verify(output.id, expires, sig, now=int(expires) + 1)  # expired
    past = int(time.time()) - 10
    expired_query = f"expires={past}&sig={outputs.sign(output.id, past)}"
    assert outputs.http_response(output.id, expired_query)["status"] == 403
    assert outputs.http_response(output.id, f"expires={expires}&sig={'0' * 64}")["status"] == 403
    assert outputs.http_response("not-a-uuid", f"expires={expires}&sig={sig}")["status"] == 403


def test_signing_key_is_kept_beside_the_secrets(in_task: str, storage_env: Path) -> None:
    key = outputs.signing_key()
    assert (storage_env / outputs.SIGNING_KEY_NAME).read_text().strip() == key
    assert outputs.signing_key() == key


def test_expired_outputs_are_cleaned_up(backend: str, in_task: str, tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    short = Output(path=path).save()
    kept = Output(path=path).save()
    outputs.public_url(kept.id, expires=7200)  # a later URL keeps its file alive that long
    assert outputs.cleanup_expired(now=time.time() + 3700) == 1
    assert not short.exists() and kept.exists()
    with pytest.raises(FileNotFoundError):
        outputs.open_output(short.id)
    with pytest.raises(OutputNotFoundError):
        short.stat()
    assert outputs.cleanup_expired(now=time.time() + 7300) == 1
    assert storage.get_storage().list("outputs") == []


def test_pil_image_round_trip(backend: str, in_task: str) -> None:
    image = PILImage.new("RGB", (100, 100), color="white")
    image.putpixel((3, 4), (255, 0, 0))
    output = Output.from_pil_image(image).save()
    assert output.path.suffix == ".png"
    name, stream, size = outputs.open_output(output.id)
    with stream:
        data = stream.read()
    assert len(data) == size
    assert name.endswith(".png")
    loaded = PILImage.open(io.BytesIO(data))
    assert loaded.format == "PNG" and loaded.size == (100, 100) and loaded.getpixel((3, 4)) == (255, 0, 0)
    jpeg = Output.from_pil_image(image, format="JPEG").save()
    assert jpeg.path.suffix == ".jpeg"


def test_from_file_keeps_the_name(backend: str, in_task: str, tmp_path: Path) -> None:
    source = tmp_path / "audio.mp3"
    source.write_bytes(b"ID3\x03")
    with open(source, "rb") as handle:
        output = Output.from_file(handle).save()
    assert output.path.name == "audio.mp3"
    assert storage.get_storage().read_bytes(f"outputs/{output.task_id}/{output.id}/audio.mp3") == b"ID3\x03"


def test_s3_public_url_is_presigned_and_fetchable(s3_env: str, in_task: str, moto_url: str, tmp_path: Path) -> None:
    path = tmp_path / "image.bin"
    path.write_bytes(bytes(range(256)) * 10)
    output = Output(path=path).save()
    url = output.public_url(expires=120)
    assert url.startswith(f"{moto_url}/{s3_env}/beamray/outputs/{in_task}/{output.id}/image.bin?")
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.content == path.read_bytes()
    query = _query(url)
    assert query["X-Amz-Expires"] == "120" and query["X-Amz-Credential"].startswith("testing/")
    # moto's server does not check presigned signatures or expiry (real S3, MinIO, R2 do), so refusing a
    # tampered or expired presigned URL is the server's part; beamray's part is the expiry it signs.


def test_s3_url_expiry_extends_the_outputs_retention(s3_env: str, in_task: str, tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    output = Output(path=path).save()
    output.public_url(expires=7200)
    assert outputs.cleanup_expired(now=time.time() + 3700) == 0
    assert outputs.cleanup_expired(now=time.time() + 7300) == 1
    assert not output.exists()


def test_outputs_for_task_lists_live_outputs(backend: str, in_task: str, tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("a")
    second.write_text("b")
    Output(path=first).save()
    Output(path=second).save()
    listed = sorted(outputs.outputs_for_task(in_task), key=lambda item: item["name"])
    assert [item["name"] for item in listed] == ["a.txt", "b.txt"]
    assert all(3500 <= item["expires_in"] <= 3600 for item in listed)
    if backend == "s3":
        assert httpx.get(listed[0]["url"]).content == b"a"
    else:
        query = _query(listed[1]["url"])
        assert outputs.verify(listed[1]["url"].split("/output/id/")[1].split("?")[0], query["expires"], query["sig"])
    assert outputs.outputs_for_task("some-other-task") == []
