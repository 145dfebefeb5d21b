"""How secret values travel to a remote cluster: out of the job's command line, sealed in its logs."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from beamray import locations, remote, store


@pytest.fixture
def job_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run ``_private_package`` and make its package importable, as Ray's ``py_modules`` does on the cluster."""

    def make(argv: list[str], key: bytes = b"k" * 32) -> list[str]:
        command = remote._private_package(argv, str(tmp_path / remote.SEAL_MODULE), key)
        monkeypatch.syspath_prepend(str(tmp_path))
        sys.modules.pop(remote.SEAL_MODULE, None)
        importlib.invalidate_caches()
        return command

    yield make
    sys.modules.pop(remote.SEAL_MODULE, None)


def test_a_secret_value_moves_from_the_command_line_into_the_job_package(job_package, tmp_path: Path):
    command = job_package(["secret", "create", "KEY", "hunter2"])
    assert command == ["secret", "create", "KEY", "--value-from-job"] and "hunter2" not in command
    assert remote.shipped_value() == "hunter2"
    shipped = tmp_path / remote.SEAL_MODULE / "__init__.py"
    assert shipped.stat().st_mode & 0o777 == 0o600 and (tmp_path / remote.SEAL_MODULE).stat().st_mode & 0o777 == 0o700


def test_other_commands_are_submitted_unchanged(job_package):
    argv = ["deployment", "list"]
    assert job_package(argv) == argv
    with pytest.raises(ValueError, match="no secret value was shipped"):
        remote.shipped_value()


def test_what_a_remote_command_prints_of_secrets_only_the_caller_can_read(job_package):
    key = b"\x01" * 32
    job_package(["secret", "show", "KEY"], key)
    sealed = remote.for_caller("påss wörd " * 10)
    assert "påss" not in sealed and sealed.startswith("beamray-sealed:")
    assert remote.unseal(key, sealed.removeprefix("beamray-sealed:")) == "påss wörd " * 10
    assert remote.unseal(bytes(32), sealed.removeprefix("beamray-sealed:")) != "påss wörd " * 10


def test_outside_a_remote_job_values_print_as_they_are():
    sys.modules.pop(remote.SEAL_MODULE, None)
    assert remote.for_caller("plain") == "plain"


def test_workers_get_a_redis_password_by_name_not_by_value(monkeypatch):
    monkeypatch.setenv("BEAMRAY_REDIS_URL", "redis://:p4ssw0rd@redis.internal:6379/1")
    assert locations.worker_settings()["BEAMRAY_STORE"] == "redis-env:BEAMRAY_REDIS_URL"
    assert "p4ssw0rd" not in str(locations.actor_settings())
    monkeypatch.setenv("BEAMRAY_REDIS_URL", "redis://redis.internal:6379/1")  # no credentials: as it is
    assert locations.worker_settings()["BEAMRAY_STORE"] == "redis://redis.internal:6379/1"


def test_a_job_on_the_embedded_head_passes_the_heads_own_locators_on(monkeypatch, tmp_path):
    """A Ray job has an address (so it counts as remote) but runs with the head's worker settings."""
    monkeypatch.setenv("BEAMRAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.delenv("BEAMRAY_SECRETS", raising=False)
    monkeypatch.delenv("BEAMRAY_STORE", raising=False)
    monkeypatch.delenv("BEAMRAY_REDIS_URL", raising=False)
    assert (locations.worker_settings()["BEAMRAY_SECRETS"], locations.worker_settings()["BEAMRAY_STORE"]) == \
        ("kv", "raykv")
    monkeypatch.setenv("BEAMRAY_SECRETS", f"file:{tmp_path / 'secrets.json'}")
    monkeypatch.setenv("BEAMRAY_STORE", f"sqlite:{tmp_path / 'store.db'}")
    settings = locations.worker_settings()
    assert settings["BEAMRAY_SECRETS"] == f"file:{tmp_path / 'secrets.json'}"
    assert settings["BEAMRAY_STORE"] == f"sqlite:{tmp_path / 'store.db'}"


def test_a_worker_without_the_variable_gets_a_clear_error(monkeypatch):
    monkeypatch.delenv("BEAMRAY_REDIS_URL", raising=False)
    with pytest.raises(ValueError, match="BEAMRAY_REDIS_URL is not set on this node"):
        store.open_store("redis-env:BEAMRAY_REDIS_URL")
