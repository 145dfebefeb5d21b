"""Volumes and cloud buckets: get_or_create, mounting in separate processes and a Ray task, concurrent
writers, S3 mirrors (moto server), read-only buckets, and the volume CLI through CliRunner."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from beamray import locations, secrets, storage
from beamray.adapters.volume import CloudBucket, CloudBucketConfig, Volume
from beamray.volumes import delete_volume, get_volume, list_volumes
from beamray.cli.volume import COMMANDS, cp, ls, mv, rm, volume
from beamray.exceptions import SecretNotFoundError
from beamray.runtime import mounts
from tests import test_storage
from tests.test_storage import make_bucket

# the storage fixtures, shared with test_storage.py and test_output.py
moto_url, s3_env, storage_env = test_storage.moto_url, test_storage.s3_env, test_storage.storage_env


def run_python(code: str, cwd: Path, **env: str) -> str:
    """Run ``code`` in a fresh interpreter (a separate "task"), with this test's environment."""
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env={**os.environ, **env},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


# ---------------------------------------------------------------------------------------------- Volume


def test_volume_keeps_the_sdk_attributes() -> None:
    vol = Volume(name="weights", mount_path="./weights")
    assert (vol.name, vol.mount_path, vol.ready, vol.volume_id) == ("weights", "./weights", False, None)
    bucket = CloudBucket("uploads", "./uploads", CloudBucketConfig(access_key="K", secret_key="S"))
    assert bucket.get_or_create() is True
    assert bucket.export()["config"]["bucket_name"] == "uploads"
    assert CloudBucketConfig() == CloudBucketConfig(read_only=False, force_path_style=False, access_key=None,
                                                    secret_key=None, endpoint=None, region=None)


def test_get_or_create_is_idempotent_and_persists(storage_env: Path) -> None:
    first = Volume("weights", "./w")
    assert first.get_or_create() is True
    assert first.ready and first.volume_id
    again = Volume("weights", "./elsewhere")
    again.get_or_create()
    assert again.volume_id == first.volume_id
    out = run_python("from beamray import adapters; from beamray.adapters.volume import Volume\n"
                     "v = Volume('weights', '/x'); v.get_or_create(); print(v.volume_id)", storage_env)
    assert out.strip() == first.volume_id
    assert [record.name for record in list_volumes()] == ["weights"]


def test_invalid_volume_names_are_refused(storage_env: Path) -> None:
    for name in ("", "../up", "a/b", "-x", "x" * 64):
        with pytest.raises(ValueError, match="Invalid volume name"):
            Volume(name, "./x").get_or_create()


def test_mount_links_mount_path_and_volumes_root(storage_env: Path) -> None:
    workdir = storage_env / "work"
    workdir.mkdir()
    with mounts.mount_all([Volume("data", "./data")], cwd=workdir) as mounted:
        (workdir / "data" / "hello.txt").write_text("hi")
        assert (storage_env / "volumes-root" / "data" / "hello.txt").read_text() == "hi"
        assert mounted.mounts[0].target == storage_env / "storage" / "volumes" / "data"
    assert (storage_env / "storage" / "volumes" / "data" / "hello.txt").read_text() == "hi"


def test_mount_path_that_holds_files_is_an_error_an_empty_dir_is_replaced(storage_env: Path) -> None:
    workdir = storage_env / "work"
    (workdir / "busy").mkdir(parents=True)
    (workdir / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(mounts.MountError, match="non-empty directory"):
        mounts.mount_all([Volume("data", "./busy")], cwd=workdir)
    assert (workdir / "busy" / "keep.txt").read_text() == "mine"
    (workdir / "empty").mkdir()
    mounts.mount_all([Volume("data", "./empty")], cwd=workdir).close()
    assert (workdir / "empty").is_symlink()


def test_volumes_root_falls_back_to_beamray_home(storage_env: Path, beamray_home: Path, monkeypatch) -> None:
    blocker = storage_env / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("BEAMRAY_VOLUMES_ROOT", str(blocker / "volumes"))  # cannot be created
    assert mounts.volumes_root() == beamray_home / "volumes"
    mounted = mounts.mount_all([Volume("fallback-vol", str(storage_env / "m"))])
    try:
        assert (beamray_home / "volumes" / "fallback-vol").is_symlink()
    finally:
        mounted.close()
        (beamray_home / "volumes" / "fallback-vol").unlink()


_TASK = """
import sys
from pathlib import Path
from beamray.adapters.volume import Volume
from beamray.runtime.mounts import task_mounts
with task_mounts([Volume("shared", "./mnt")]):
    mnt = Path("mnt")
    print(sorted(p.name for p in mnt.iterdir()))
    (mnt / sys.argv[1]).write_text(sys.argv[1])
"""


def test_volume_persists_between_tasks_in_separate_processes(storage_env: Path) -> None:
    for index, name in enumerate(("first", "second")):
        cwd = storage_env / f"task{index}"
        cwd.mkdir()
        out = run_python(_TASK.replace("sys.argv[1]", repr(name)), cwd)
        assert out.strip() == ("[]" if name == "first" else "['first']")
    assert sorted(os.listdir(storage_env / "storage" / "volumes" / "shared")) == ["first", "second"]


_CONCURRENT = """
import sys, time
from pathlib import Path
from beamray.adapters.volume import Volume
from beamray.runtime.mounts import task_mounts
from beamray.storage import atomic_write
me = sys.argv[1]
with task_mounts([Volume("conc", "./mnt")]):
    mnt = Path("mnt")
    with open(mnt / f"log-{me}.txt", "a") as log:
        for i in range(300):
            log.write(f"{me} {i}\\n")
            log.flush()
            atomic_write(mnt / "same.txt", me * 100_000)
            text = (mnt / "same.txt").read_text()
            assert len(text) == 100_000 and len(set(text)) == 1, "torn"
"""


def _two_writers(storage_env: Path, **env: str) -> None:
    procs = []
    for me, cache in (("A", "node-a"), ("B", "node-b")):
        cwd = storage_env / f"w{me}"
        cwd.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT.replace("sys.argv[1]", repr(me))], cwd=cwd,
            env={**os.environ, "BEAMRAY_MOUNT_CACHE": str(storage_env / cache), **env},
            stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err


def _read_volume(storage_env: Path, name: str) -> dict[str, str]:
    cwd = storage_env / "reader"
    cwd.mkdir(exist_ok=True)
    with mounts.mount_all([Volume(name, "./r")], cwd=cwd):
        return {p.name: p.read_text() for p in (cwd / "r").iterdir()}


def test_two_concurrent_writers_lose_nothing(storage_env: Path) -> None:
    _two_writers(storage_env)
    files = _read_volume(storage_env, "conc")
    for me in "AB":
        assert files[f"log-{me}.txt"].splitlines() == [f"{me} {i}" for i in range(300)]
    assert files["same.txt"] in ("A" * 100_000, "B" * 100_000)


# --------------------------------------------------------------------------------------- S3 storage


def test_s3_volume_two_nodes_concurrent_writers_lose_nothing(s3_env: str, storage_env: Path) -> None:
    _two_writers(storage_env)  # separate mirror caches: two "nodes"
    cache_listing = set(os.listdir(storage_env / "node-a"))
    assert len(cache_listing) == 1  # one mirror for the volume on that node
    files = _read_volume(storage_env, "conc")  # a third node
    for me in "AB":
        assert files[f"log-{me}.txt"].splitlines() == [f"{me} {i}" for i in range(300)]
    assert files["same.txt"] in ("A" * 100_000, "B" * 100_000)
    backend = storage.get_storage()
    assert {info.key for info in backend.list("volumes/conc")} == {
        "volumes/conc/log-A.txt", "volumes/conc/log-B.txt", "volumes/conc/same.txt"}


def test_s3_volume_sync_down_up_and_deletes(s3_env: str, storage_env: Path, monkeypatch) -> None:
    node_a, node_b = storage_env / "a", storage_env / "b"
    vol = Volume("sync", "./v")
    monkeypatch.setenv("BEAMRAY_MOUNT_CACHE", str(node_a / "cache"))
    with mounts.mount_all([vol], cwd=node_a):
        (node_a / "v" / "dir").mkdir()
        (node_a / "v" / "dir" / "x.txt").write_text("x1")
        (node_a / "v" / "gone.txt").write_text("bye")
    monkeypatch.setenv("BEAMRAY_MOUNT_CACHE", str(node_b / "cache"))
    with mounts.mount_all([vol], cwd=node_b):
        assert (node_b / "v" / "dir" / "x.txt").read_text() == "x1"
        (node_b / "v" / "gone.txt").unlink()
        (node_b / "v" / "dir" / "x.txt").write_text("x2")
    monkeypatch.setenv("BEAMRAY_MOUNT_CACHE", str(node_a / "cache"))
    with mounts.mount_all([vol], cwd=node_a) as mounted:  # node a's mirror catches up
        assert (node_a / "v" / "dir" / "x.txt").read_text() == "x2"
        assert not (node_a / "v" / "gone.txt").exists()
        assert mounted.mounts[0].mirror.dirty() == []  # type: ignore[union-attr]


def test_s3_delete_does_not_remove_a_newer_remote_version(s3_env: str, storage_env: Path, monkeypatch) -> None:
    vol = Volume("race", "./v")
    monkeypatch.setenv("BEAMRAY_MOUNT_CACHE", str(storage_env / "a"))
    with mounts.mount_all([vol], cwd=storage_env):
        (storage_env / "v" / "f.txt").write_text("v1")
    with mounts.mount_all([vol], cwd=storage_env):
        storage.get_storage().write_bytes("volumes/race/f.txt", b"v2 from another node")
        (storage_env / "v" / "f.txt").unlink()
    assert storage.get_storage().read_bytes("volumes/race/f.txt") == b"v2 from another node"


# ------------------------------------------------------------------------------------------ Ray task


@pytest.mark.cluster
def test_volume_in_a_real_ray_task(ray_cluster, storage_env: Path) -> None:
    import ray

    @ray.remote
    def task(workdir: str) -> list[str]:
        from beamray.adapters.volume import Volume as RemoteVolume
        from beamray.runtime.mounts import task_mounts

        previous = os.getcwd()
        os.chdir(workdir)
        try:
            with task_mounts([RemoteVolume("raytask", "./vol")]):
                seen = sorted(os.listdir("vol"))
                Path("vol/from-ray.txt").write_text(str(os.getpid()))
                return seen
        finally:
            os.chdir(previous)

    Volume("raytask", "./x").get_or_create()
    storage.get_storage().write_bytes("volumes/raytask/from-driver.txt", b"hello")
    workdir = storage_env / "ray-work"
    workdir.mkdir()
    env = {"env_vars": locations.storage_settings()}
    assert ray.get(task.options(runtime_env=env).remote(str(workdir))) == ["from-driver.txt"]
    assert (storage_env / "volumes-root" / "raytask" / "from-ray.txt").exists()
    assert storage.get_storage().read_bytes("volumes/raytask/from-ray.txt").isdigit()


# ------------------------------------------------------------------------------------------ CloudBucket


@pytest.fixture
def bucket_env(storage_env: Path, moto_url: str, monkeypatch) -> tuple[str, str]:
    """A bucket with two objects; credentials exist only as beamray secrets, not in AWS_* variables."""
    bucket = make_bucket(moto_url)
    client = storage.s3_client(endpoint_url=moto_url, region="us-east-1", access_key="testing", secret_key="testing")
    client.put_object(Bucket=bucket, Key="in/a.txt", Body=b"a")
    client.put_object(Bucket=bucket, Key="b.txt", Body=b"b")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(storage_env / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(storage_env / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    secrets.create("BUCKET_KEY", "testing")
    secrets.create("BUCKET_SECRET", "testing")
    return bucket, moto_url


def _bucket(bucket_env: tuple[str, str], read_only: bool = False, key: str = "BUCKET_KEY") -> CloudBucket:
    bucket, url = bucket_env
    return CloudBucket(bucket, "./b", CloudBucketConfig(read_only=read_only, access_key=key,
                                                         secret_key="BUCKET_SECRET", endpoint=url,
                                                         region="us-east-1", force_path_style=True))


def test_cloud_bucket_read_and_write_back(bucket_env, storage_env: Path) -> None:
    cloud = _bucket(bucket_env)
    with mounts.mount_all([cloud], cwd=storage_env):
        assert (storage_env / "b" / "in" / "a.txt").read_text() == "a"
        assert (storage_env / "volumes-root" / cloud.name / "b.txt").read_text() == "b"
        (storage_env / "b" / "new.txt").write_text("new")
    assert cloud.store().read_bytes("new.txt") == b"new"


def test_cloud_bucket_credentials_come_from_named_secrets(bucket_env, storage_env: Path) -> None:
    with pytest.raises(SecretNotFoundError, match="MISSING_KEY"):
        mounts.mount_all([_bucket(bucket_env, key="MISSING_KEY")], cwd=storage_env)


def test_read_only_cloud_bucket_refuses_writes(bucket_env, storage_env: Path, caplog) -> None:
    cloud = _bucket(bucket_env, read_only=True)
    with mounts.mount_all([cloud], cwd=storage_env):
        local = storage_env / "b" / "b.txt"
        assert stat.S_IMODE(local.stat().st_mode) == 0o444
        assert stat.S_IMODE((storage_env / "b" / "in").stat().st_mode) == 0o555
        if os.geteuid() != 0:
            with pytest.raises(PermissionError):
                local.write_text("changed")
        else:  # root ignores modes: the change stays local and is reported
            os.chmod(local, 0o644)
            local.write_text("changed")
    assert cloud.store().read_bytes("b.txt") == b"b"
    assert "read_only" in caplog.text or os.geteuid() != 0
    cloud.store().write_bytes("c.txt", b"c")
    with mounts.mount_all([cloud], cwd=storage_env):  # the next mount restores the bucket's view
        assert (storage_env / "b" / "b.txt").read_text() == "b"
        assert (storage_env / "b" / "c.txt").read_text() == "c"


# ------------------------------------------------------------------------------------------------- CLI


def _invoke(command, *args: str, input: str | None = None):
    result = CliRunner().invoke(command, list(args), input=input, catch_exceptions=False)
    return result


def test_cli_exports_its_commands() -> None:
    assert COMMANDS == [volume, ls, cp, rm, mv]
    assert [c.name for c in COMMANDS] == ["volume", "ls", "cp", "rm", "mv"]


def test_cli_volume_create_list_delete(storage_env: Path) -> None:
    created = _invoke(volume, "create", "myvol")
    assert created.exit_code == 0 and "myvol" in created.output
    listed = _invoke(volume, "list")
    assert "Name" in listed.output and "myvol" in listed.output and "1 volume" in listed.output
    assert json.loads(_invoke(volume, "list", "--json").output)[0]["name"] == "myvol"
    kept = _invoke(volume, "delete", "myvol", input="n\n")
    assert "Are you sure? (y/n)" in kept.output and get_volume("myvol") is not None
    deleted = _invoke(volume, "delete", "myvol", "-y")
    assert deleted.output.strip() == "=> Deleted volume myvol"
    assert get_volume("myvol") is None
    missing = CliRunner().invoke(volume, ["delete", "myvol", "-y"])
    assert missing.exit_code == 1 and "not found" in missing.output


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_cli_cp_both_ways_and_ls(backend: str, storage_env: Path, request, monkeypatch) -> None:
    if backend == "s3":
        request.getfixturevalue("s3_env")
    monkeypatch.chdir(storage_env)
    _invoke(volume, "create", "myvol")
    Path("file.txt").write_text("hello")
    (Path("mydir") / "sub").mkdir(parents=True)
    Path("mydir/a.txt").write_text("A")
    Path("mydir/sub/b.txt").write_text("B")

    up = _invoke(cp, "file.txt", "beam://myvol/")
    assert up.exit_code == 0 and up.output.startswith("=> beam://myvol/ (copying 1 object)")
    assert _invoke(cp, "file.txt", "beam://myvol/hello").exit_code == 0  # keeps the extension
    assert _invoke(cp, "mydir", "beam://myvol/").exit_code == 0  # trailing slash: myvol/mydir/…
    assert _invoke(cp, "mydir", "beam://myvol/flat").exit_code == 0  # no slash: contents into flat/
    keys = sorted(info.key for info in storage.get_storage().list("volumes/myvol"))
    assert keys == ["volumes/myvol/file.txt", "volumes/myvol/flat/a.txt", "volumes/myvol/flat/sub/b.txt",
                    "volumes/myvol/hello.txt", "volumes/myvol/mydir/a.txt", "volumes/myvol/mydir/sub/b.txt"]

    listing = _invoke(ls, "myvol")
    assert "mydir/" in listing.output and "file.txt" in listing.output
    assert "4 items" in listing.output  # file.txt, flat/, hello.txt, mydir/
    pattern = json.loads(_invoke(ls, "myvol/*.txt", "--json").output)
    assert [entry["name"] for entry in pattern] == ["file.txt", "hello.txt"]

    down = storage_env / "down"
    down.mkdir()
    assert _invoke(cp, "beam://myvol/file.txt", str(down)).exit_code == 0
    assert (down / "file.txt").read_text() == "hello"
    assert _invoke(cp, "beam://myvol/mydir/", str(down)).exit_code == 0  # trailing slash keeps the dir
    assert (down / "mydir" / "sub" / "b.txt").read_text() == "B"
    assert _invoke(cp, "beam://myvol/flat", str(down / "flat-copy")).exit_code == 0
    assert (down / "flat-copy" / "a.txt").read_text() == "A"

    both_local = CliRunner().invoke(cp, ["file.txt", "other.txt"])
    assert both_local.exit_code == 1 and "cannot both be local" in both_local.output
    no_volume = CliRunner().invoke(cp, ["file.txt", "beam://nope/"])
    assert no_volume.exit_code == 1 and "Volume 'nope' not found" in no_volume.output

    assert _invoke(mv, "myvol/hello.txt", "myvol/moved/hello.txt").exit_code == 0
    removed = _invoke(rm, "myvol/flat")
    assert removed.output.startswith("=> myvol/flat (2 objects deleted)")
    keys = sorted(info.key[len("volumes/myvol/"):] for info in storage.get_storage().list("volumes/myvol"))
    assert keys == ["file.txt", "moved/hello.txt", "mydir/a.txt", "mydir/sub/b.txt"]
    assert delete_volume("myvol") == 4


def test_cli_upload_is_seen_by_a_mounted_task(storage_env: Path, monkeypatch) -> None:
    monkeypatch.chdir(storage_env)
    _invoke(volume, "create", "weights")
    Path("model.bin").write_bytes(b"\x01\x02")
    _invoke(cp, "model.bin", "beam://weights/")
    out = run_python("from beamray.adapters.volume import Volume\nfrom beamray.runtime.mounts import task_mounts\n"
                     "with task_mounts([Volume('weights', './w')]):\n"
                     "    print(open('w/model.bin', 'rb').read().hex())", storage_env)
    assert out.strip() == "0102"
    assert uuid.UUID(get_volume("weights").id)  # type: ignore[union-attr]
