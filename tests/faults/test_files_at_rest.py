"""Files at rest: BEAMRAY_HOME and what beamray writes in it are private (dirs 0700, files 0600) whatever the
umask; tokens, keys and secrets are fsynced; a damaged one is an error, never silently replaced. No cluster."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from beamray import code, config, head, secrets, storage, volumes
from tests.faults.test_listeners import start_without_ray


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(params=[0o000, 0o022], ids=["umask000", "umask022"])
def home(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home that does not exist yet (two levels down), under a permissive umask, with no cluster."""
    for name in ("BEAMRAY_ADDRESS", "RAY_ADDRESS", "BEAMRAY_TOKEN", "BEAMRAY_SECRETS", "BEAMRAY_STORE",
                 "BEAMRAY_STORAGE_URL", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "parent" / "home"
    monkeypatch.setenv("BEAMRAY_HOME", str(path))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))  # ~/.ray/auth_token lands here
    previous = os.umask(request.param)
    yield path
    os.umask(previous)


def _everything_private(root: Path) -> list[str]:
    """Every entry under ``root`` (itself included) whose mode is not 0700 (dirs) / 0600 (files)."""
    wrong = []
    for path in [root, *root.rglob("*")]:
        wanted = 0o700 if path.is_dir() else 0o600
        if _mode(path) != wanted:
            wrong.append(f"{path.relative_to(root.parent)}: {oct(_mode(path))}")
    return wrong


def test_everything_beamray_writes_under_the_home_is_private(home: Path, tmp_path: Path) -> None:
    config.set_config("http_port", 8123)
    secrets.create("API_KEY", "s3cr3t")
    secrets.gateway_token()
    secrets.private_value("signing_key", lambda: "k" * 64)
    with head._lock():
        pass
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text("print('hi')\n")
    archive = code.package(project)
    store = storage.get_storage()
    store.write_bytes("outputs/task-1/out-1/result.json", b'{"result": 42}')
    volumes.get_or_create_volume("weights", store)
    storage.atomic_write(store.local_path("volumes/weights/a/b.bin"), b"\0")

    assert archive.parent == home / "code" and (home / "storage" / "outputs").is_dir()
    assert _everything_private(home) == []
    assert _mode(home.parent) == 0o700  # created by beamray too


def test_the_embedded_heads_own_files_are_private(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    start_without_ray(monkeypatch, tmp_path)  # its log, lock and record; ``ray start`` itself is not run
    written = {path.name for path in (tmp_path / "home").iterdir()}
    assert {"head.log", "cluster.lock", "cluster.json"} <= written
    assert _everything_private(tmp_path / "home") == []


def test_an_existing_open_home_is_tightened_on_first_use(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "code").mkdir(parents=True)
    (home / "storage" / "volumes" / "v").mkdir(parents=True)
    for path, data in ((home / "config.json", "{}"), (home / "token", "t" * 64),
                       (home / "code" / "abc.zip", "zip"), (home / "storage" / "volumes" / "v" / "f", "x")):
        path.write_text(data)
        path.chmod(0o644)
    for directory in (home, home / "code", home / "storage", home / "storage" / "volumes", home / "storage" / "volumes" / "v"):
        directory.chmod(0o755)

    assert config.home() == home
    assert _everything_private(home) == []
    assert config.load_config() == {}  # tightening is not an error, and the contents stay


def test_the_embedded_heads_ray_token_is_private(home: Path, tmp_path: Path) -> None:
    head.ensure_ray_token()
    token = tmp_path / "user" / ".ray" / "auth_token"
    assert len(token.read_text()) == 64 and _mode(token) == 0o600 and _mode(token.parent) == 0o700
    token.chmod(0o644)
    head.ensure_ray_token()
    assert _mode(token) == 0o600 and len(token.read_text()) == 64


class _Fsyncs:
    """Records what each fsync was called on: regular files and directories."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self._fsync = os.fsync

    def __call__(self, fd: int) -> None:
        self.kinds.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        self._fsync(fd)


@pytest.mark.parametrize("write", [
    lambda: secrets.create("API_KEY", "v"),
    lambda: secrets.gateway_token(),
    lambda: secrets.private_value("signing_key", lambda: "k" * 64),
    lambda: head.ensure_ray_token(),
], ids=["secrets", "gateway-token", "signing-key", "ray-token"])
def test_secrets_tokens_and_keys_are_fsynced_file_and_directory(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                                write) -> None:
    fsyncs = _Fsyncs()
    monkeypatch.setattr(os, "fsync", fsyncs)
    write()
    assert "file" in fsyncs.kinds and "dir" in fsyncs.kinds
    assert fsyncs.kinds.index("file") < len(fsyncs.kinds) - 1 - fsyncs.kinds[::-1].index("dir")


def test_an_empty_secrets_store_is_an_error_not_an_empty_store(home: Path) -> None:
    store = home / "secrets.json"
    secrets.create("API_KEY", "v")
    store.write_text("")
    for operation in (secrets.list_secrets, lambda: secrets.create("OTHER", "x"), lambda: secrets.load("API_KEY")):
        with pytest.raises(ValueError, match=rf"{store} is empty; restore it from a backup, or delete it"):
            operation()
    assert store.read_text() == ""


def test_a_truncated_secrets_store_says_what_to_do(home: Path) -> None:
    store = home / "secrets.json"
    secrets.create("API_KEY", "v")
    store.write_text(store.read_text()[:10])
    with pytest.raises(ValueError, match=rf"{store} is not valid JSON .*restore it from a backup, or delete it"):
        secrets.list_secrets()


@pytest.mark.parametrize("name, make, lost", [
    ("token", secrets.gateway_token, "old gateway token stop authenticating"),
    ("signing_key", lambda: secrets.private_value("signing_key", lambda: os.urandom(32).hex()),
     "signed with the old key"),
], ids=["gateway-token", "signing-key"])
@pytest.mark.parametrize("damage", ["", "   \n"], ids=["empty", "blank"])
def test_a_damaged_token_or_key_is_an_error_naming_it(home: Path, name: str, make, lost: str, damage: str) -> None:
    original = make()
    path = home / name
    assert path.read_text() == original
    path.write_text(damage)
    with pytest.raises(ValueError, match=rf"{path} is empty; restore it from a backup, or delete it to start "
                                         rf"over \(.*{lost}"):
        make()
    assert path.read_text() == damage  # not replaced
    path.unlink()
    assert make() != original  # deleting it is the way to start over


def test_an_empty_ray_token_is_an_error_naming_it(home: Path, tmp_path: Path) -> None:
    token = tmp_path / "user" / ".ray" / "auth_token"
    token.parent.mkdir(parents=True)
    token.write_text("")
    with pytest.raises(ValueError, match=rf"{token} is empty; restore it from a backup, or delete it"):
        head.ensure_ray_token()
    assert token.read_text() == ""


def test_write_private_leaves_no_temporary_file_when_it_fails(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = config.home() / "value"

    def broken(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        config.write_private(target, "x")
    assert list(home.iterdir()) == []
