"""The storage backends (a directory, and S3 on a real moto server): one behaviour, two backends.

The fixtures here (``moto_url``, ``local_storage``, ``s3_storage``, ``storage_env``) are imported by
``test_volumes.py`` and ``test_output.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from beamray import locations, storage


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's standalone S3 server over real HTTP (no mocked calls), for the whole session."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def storage_env(beamray_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every storage location of one test inside its tmp_path (cleaned up by pytest)."""
    monkeypatch.setenv("BEAMRAY_STORAGE_URL", str(tmp_path / "storage"))
    monkeypatch.setenv("BEAMRAY_VOLUMES_ROOT", str(tmp_path / "volumes-root"))
    monkeypatch.setenv("BEAMRAY_MOUNT_CACHE", str(tmp_path / "mounts"))
    monkeypatch.setenv("BEAMRAY_SECRETS", f"file:{tmp_path / 'secrets.json'}")
    for name in ("BEAMRAY_S3_ENDPOINT_URL", "BEAMRAY_S3_ADDRESSING_STYLE", "BEAMRAY_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def make_bucket(moto_url: str) -> str:
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    storage.s3_client(endpoint_url=moto_url, region="us-east-1", access_key="testing",
                      secret_key="testing").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_env(storage_env: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """BEAMRAY_STORAGE_URL=s3://<fresh bucket>/beamray on the moto server; returns the bucket name."""
    s3_credentials(monkeypatch)
    bucket = make_bucket(moto_url)
    monkeypatch.setenv("BEAMRAY_STORAGE_URL", f"s3://{bucket}/beamray")
    monkeypatch.setenv("BEAMRAY_S3_ENDPOINT_URL", moto_url)
    return bucket


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, storage_env: Path) -> storage.Storage:
    if request.param == "local":
        return storage.get_storage()
    request.getfixturevalue("s3_env")
    return storage.get_storage()


def test_default_backend_is_a_directory_under_beamray_home(beamray_home: Path, monkeypatch) -> None:
    monkeypatch.delenv("BEAMRAY_STORAGE_URL", raising=False)
    backend = storage.get_storage()
    assert isinstance(backend, storage.LocalStorage)
    assert backend.root == beamray_home / "storage"


def test_storage_url_forms(tmp_path: Path) -> None:
    assert storage.open_storage(f"file://{tmp_path}").root == tmp_path  # type: ignore[union-attr]
    assert storage.open_storage(str(tmp_path)).root == tmp_path  # type: ignore[union-attr]
    s3 = storage.open_storage("s3://my-bucket/some/prefix/")
    assert isinstance(s3, storage.S3Storage) and (s3.bucket, s3.prefix) == ("my-bucket", "some/prefix")
    with pytest.raises(ValueError, match="names no bucket"):
        storage.open_storage("s3:///x")
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        storage.open_storage("gs://bucket")


def test_s3_client_reads_endpoint_and_region_from_env(monkeypatch) -> None:
    monkeypatch.setenv("BEAMRAY_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    client = storage.s3_client()
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.region_name == "eu-west-3"
    assert client.meta.config.s3["addressing_style"] == "path"
    bucket_client = storage.s3_client(storage_env=False)  # a CloudBucket without endpoint means AWS itself
    assert "amazonaws.com" in bucket_client.meta.endpoint_url


def test_runtime_env_vars_pin_the_storage_url(storage_env: Path) -> None:
    env = locations.storage_settings()
    assert env["BEAMRAY_STORAGE_URL"] == str(storage_env / "storage")
    assert env["BEAMRAY_VOLUMES_ROOT"] == str(storage_env / "volumes-root")
    assert not any(key.startswith("AWS_SECRET") or key == "AWS_ACCESS_KEY_ID" for key in env)


def test_keys_cannot_escape_the_root() -> None:
    for bad in ("", "/", "a/../b", "./a", ".."):
        with pytest.raises(ValueError, match="invalid storage path"):
            storage.check_key(bad)
    assert storage.check_key("/a//b/") == "a/b"


def test_write_read_stat_list_delete(store: storage.Storage, tmp_path: Path) -> None:
    store.write_bytes("d/one.txt", b"one")
    source = tmp_path / "two.bin"
    source.write_bytes(b"\x00" * 1000)
    info = store.upload("d/sub/two.bin", source)
    assert info.size == 1000 and info.etag
    assert store.read_bytes("d/one.txt") == b"one"
    assert store.stat("d/one.txt").size == 3  # type: ignore[union-attr]
    assert store.stat("d/missing") is None and not store.exists("d/missing")
    assert store.is_dir("d/sub") and not store.is_dir("d/nope")
    assert [i.key for i in store.list("d")] == ["d/one.txt", "d/sub/two.bin"]
    listing = store.list_dir("d")
    assert [(e.name, e.is_dir) for e in listing] == [("one.txt", False), ("sub", True)]
    target = tmp_path / "down" / "two.bin"
    store.download("d/sub/two.bin", target)
    assert target.read_bytes() == b"\x00" * 1000
    with pytest.raises(FileNotFoundError):
        store.download("d/missing", tmp_path / "x")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("d/missing")
    assert store.delete("d/one.txt") and not store.delete("d/one.txt")
    assert store.delete_prefix("d") == 1
    assert store.list("d") == []


def test_a_rewrite_changes_the_etag(store: storage.Storage) -> None:
    first = store.write_bytes("k", b"a").etag
    second = store.write_bytes("k", b"bb").etag
    assert first != second
    assert store.stat("k").etag == second  # type: ignore[union-attr]


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "file"
    storage.atomic_write(target, "old")
    with pytest.raises(RuntimeError):
        with storage.atomic_open(target, "w") as handle:
            handle.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["file"]
    with pytest.raises(FileExistsError):
        with storage.atomic_open(target, "x") as handle:
            handle.write("new")
    assert target.read_text() == "old"
    with pytest.raises(ValueError, match="writes a new file"):
        with storage.atomic_open(target, "a"):
            pass


_WRITER = """
import sys
from pathlib import Path
from beamray.storage import atomic_write
path, me = Path(sys.argv[1]), sys.argv[2]
body = me * 200_000
seen = set()
for _ in range(60):
    atomic_write(path, body)
    text = path.read_text()
    assert len(text) == 200_000 and len(set(text)) == 1, "torn read"
    seen.add(text[0])
print("".join(sorted(seen)))
"""


def test_atomic_write_from_two_processes_never_tears(tmp_path: Path) -> None:
    target = tmp_path / "shared.txt"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(target), letter], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for letter in "AB"]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    final = target.read_text()
    assert final in ("A" * 200_000, "B" * 200_000)
    assert sorted(os.listdir(tmp_path)) == ["shared.txt"]  # no temporary files left
