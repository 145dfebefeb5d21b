"""How secret values travel to a remote cluster: out of the job's command line, sealed in its logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from beamray import locations, remote, store


def test_a_secret_value_moves_from_the_command_line_into_the_package(tmp_path: Path):
    command, key = remote._protect_secrets(["secret", "create", "KEY", "hunter2"], str(tmp_path))
    assert "hunter2" not in command and key is None
    assert command == ["secret", "create", "KEY", "--value-file", remote.VALUE_FILE]
    shipped = tmp_path / remote.VALUE_FILE
    assert shipped.read_text() == "hunter2" and shipped.stat().st_mode & 0o777 == 0o600


def test_other_commands_are_submitted_unchanged(tmp_path: Path):
    argv = ["deployment", "list"]
    assert remote._protect_secrets(argv, str(tmp_path)) == (argv, None)


def test_a_shown_value_is_sealed_for_the_caller_only(tmp_path: Path):
    command, key = remote._protect_secrets(["secret", "show", "KEY"], str(tmp_path))
    assert command[-2:] == ["--sealed-with", remote.SEAL_FILE] and key and len(key) == 32
    sealed = remote.seal(key, "påss wörd " * 10)
    assert "påss" not in sealed and sealed.startswith("beamray-sealed:")
    assert remote.unseal(key, sealed.removeprefix("beamray-sealed:")) == "påss wörd " * 10
    assert remote.unseal(bytes(32), sealed.removeprefix("beamray-sealed:")) != "påss wörd " * 10


def test_workers_get_a_redis_password_by_name_not_by_value(monkeypatch):
    monkeypatch.setenv("BEAMRAY_REDIS_URL", "redis://:p4ssw0rd@redis.internal:6379/1")
    assert locations.worker_settings()["BEAMRAY_STORE"] == "redis-env:BEAMRAY_REDIS_URL"
    assert "p4ssw0rd" not in str(locations.actor_runtime_env())
    monkeypatch.setenv("BEAMRAY_REDIS_URL", "redis://redis.internal:6379/1")  # no credentials: as it is
    assert locations.worker_settings()["BEAMRAY_STORE"] == "redis://redis.internal:6379/1"


def test_a_worker_without_the_variable_gets_a_clear_error(monkeypatch):
    monkeypatch.delenv("BEAMRAY_REDIS_URL", raising=False)
    with pytest.raises(ValueError, match="BEAMRAY_REDIS_URL is not set on this node"):
        store.open_store("redis-env:BEAMRAY_REDIS_URL")
