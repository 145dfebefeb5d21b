"""Object keys that are no relative path (``/abs``, ``a//b``, ``../x``) never reach outside a local folder:
``storage.local_path_under``, the S3 mirrors behind volumes and cloud buckets, and ``beamray cp`` down, on a
real moto S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from beamray import storage
from beamray.adapters.volume import Volume
from beamray.cli.volume import cp, volume
from beamray.runtime import mounts
from tests import test_storage, test_volumes

moto_url, s3_env, storage_env = test_storage.moto_url, test_storage.s3_env, test_storage.storage_env
bucket_env = test_volumes.bucket_env


@pytest.mark.parametrize("key", ["a.txt", "dir/sub/a.txt", "..a", "a..b/c", ".hidden"])
def test_plain_relative_keys_join_under_the_root(tmp_path: Path, key: str) -> None:
    assert storage.local_path_under(tmp_path, key) == tmp_path / key


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a//b", "a/", "../x", "a/../../x", "./a", "a/./b", "a\0b"])
def test_keys_that_are_no_relative_path_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="cannot be a local file"):
        storage.local_path_under(tmp_path, key)


def _raw_client(moto_url: str):
    return storage.s3_client(endpoint_url=moto_url, region="us-east-1", access_key="testing", secret_key="testing")


def test_read_only_bucket_mirror_never_unlinks_outside_itself(bucket_env, storage_env: Path, caplog) -> None:
    bucket, url = bucket_env
    victim = storage_env / "outside" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("keep me")
    client = _raw_client(url)
    # the twin without the leading "/" is an ordinary object: it is mirrored inside b/
    client.put_object(Bucket=bucket, Key=str(victim).lstrip("/"), Body=b"twin")
    bad_keys = [str(victim), "in//a.txt", "../victim.txt"]
    for key in bad_keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"from the bucket")
    cloud = test_volumes._bucket(bucket_env, read_only=True)
    with mounts.mount_all([cloud], cwd=storage_env):
        assert (storage_env / "b" / "in" / "a.txt").read_bytes() == b"a"  # the real in/a.txt, not in//a.txt
        assert (storage_env / "b" / "b.txt").read_text() == "b"
        assert (storage_env / "b" / str(victim).lstrip("/")).read_text() == "twin"
    for key in bad_keys:
        client.delete_object(Bucket=bucket, Key=key)  # the objects disappear: nothing local may be unlinked
    with mounts.mount_all([cloud], cwd=storage_env):
        assert victim.exists() and victim.read_text() == "keep me"
        assert (storage_env / "b" / "in" / "a.txt").read_bytes() == b"a"
    assert "skipping an object" in caplog.text


def test_writable_volume_mirror_leaves_odd_keys_alone(s3_env: str, storage_env: Path, moto_url: str) -> None:
    client = _raw_client(moto_url)
    vol = Volume("odd", "./v")
    vol.get_or_create()
    client.put_object(Bucket=s3_env, Key="beamray/volumes/odd/dir//x.txt", Body=b"double slash")
    client.put_object(Bucket=s3_env, Key="beamray/volumes/odd/ok.txt", Body=b"ok")
    with mounts.mount_all([vol], cwd=storage_env) as mounted:
        assert (storage_env / "v" / "ok.txt").read_text() == "ok"
        assert not (storage_env / "v" / "dir").exists()
        assert mounted.mounts[0].mirror.dirty() == []  # type: ignore[union-attr]
    keys = {item["Key"] for item in client.list_objects_v2(Bucket=s3_env, Prefix="beamray/volumes/odd/")["Contents"]}
    assert {"beamray/volumes/odd/dir//x.txt", "beamray/volumes/odd/ok.txt"} <= keys  # nothing deleted
    assert "beamray/volumes/odd/dir/x.txt" not in keys  # nor re-uploaded under another name


def test_cp_down_writes_only_inside_the_destination(s3_env: str, storage_env: Path, moto_url: str,
                                                    monkeypatch) -> None:
    monkeypatch.chdir(storage_env)
    assert CliRunner().invoke(volume, ["create", "myvol"]).exit_code == 0
    outside = storage_env / "outside"
    client = _raw_client(moto_url)
    client.put_object(Bucket=s3_env, Key="beamray/volumes/myvol/good.txt", Body=b"good")
    client.put_object(Bucket=s3_env, Key=f"beamray/volumes/myvol/{str(outside).lstrip('/')}/abs.txt", Body=b"twin")
    client.put_object(Bucket=s3_env, Key=f"beamray/volumes/myvol//{outside}/abs.txt", Body=b"escaped")
    client.put_object(Bucket=s3_env, Key="beamray/volumes/myvol/../outside/up.txt", Body=b"escaped")
    result = CliRunner().invoke(cp, ["beam://myvol/", str(storage_env / "dest")])
    assert result.exit_code == 0, result.output
    assert (storage_env / "dest" / "good.txt").read_text() == "good"
    assert not outside.exists()
    files = sorted(p.relative_to(storage_env / "dest").as_posix() for p in (storage_env / "dest").rglob("*")
                   if p.is_file())
    assert files == ["good.txt", f"{str(outside).lstrip('/')}/abs.txt"]
    assert "skipped" in result.output and "cannot be a local file" in result.output
