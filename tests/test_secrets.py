"""The secrets store: Beam's secret semantics, a private 0600 file store, and secrets reaching tasks."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
import uuid
from pathlib import Path

import pytest

from beamray import RemoteExecutionError, function, secrets
from beamray.exceptions import SecretNotFoundError


@pytest.fixture
def file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh file store for one test (no Ray involved)."""
    path = tmp_path / "secrets.json"
    monkeypatch.setenv("BEAMRAY_SECRETS", f"file:{path}")
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_show_list_modify_delete_round_trip(file_store: Path) -> None:
    created = secrets.create("AWS_ACCESS_KEY", "ASIAY34FZKBOKMUTVV7A")
    assert created.value == "ASIAY34FZKBOKMUTVV7A"
    assert created.created_at == created.updated_at
    assert secrets.show("AWS_ACCESS_KEY").value == "ASIAY34FZKBOKMUTVV7A"
    secrets.create("AWS_REGION", "us-east-1")
    assert [r.name for r in secrets.list_secrets()] == ["AWS_ACCESS_KEY", "AWS_REGION"]

    time.sleep(0.01)
    modified = secrets.modify("AWS_ACCESS_KEY", "NEWVALUE")
    assert modified.value == "NEWVALUE"
    assert modified.created_at == created.created_at
    assert modified.updated_at > created.updated_at
    assert secrets.load("AWS_ACCESS_KEY") == "NEWVALUE"

    secrets.delete("AWS_ACCESS_KEY")
    assert [r.name for r in secrets.list_secrets()] == ["AWS_REGION"]


def test_missing_secret_errors_name_it(file_store: Path) -> None:
    for operation in (lambda: secrets.show("NOPE"), lambda: secrets.modify("NOPE", "x"),
                      lambda: secrets.delete("NOPE")):
        with pytest.raises(SecretNotFoundError, match="Secret 'NOPE' not found"):
            operation()


def test_load_many_names_every_missing_secret(file_store: Path) -> None:
    secrets.create("PRESENT", "1")
    assert secrets.load_many(["PRESENT"]) == {"PRESENT": "1"}
    with pytest.raises(SecretNotFoundError, match="MISSING_A, MISSING_B"):
        secrets.load_many(["PRESENT", "MISSING_A", "MISSING_B"])


def test_duplicate_create_is_refused_and_keeps_the_value(file_store: Path) -> None:
    secrets.create("TOKEN", "first")
    with pytest.raises(ValueError, match="Secret 'TOKEN' already exists"):
        secrets.create("TOKEN", "second")
    assert secrets.show("TOKEN").value == "first"


@pytest.mark.parametrize("name", ["", "1ABC", "MY-KEY", "MY KEY", "a.b", "beamray/signing_key", "KEY\n"])
def test_create_rejects_names_that_are_not_env_var_names(file_store: Path, name: str) -> None:
    with pytest.raises(ValueError, match="empty|Invalid secret name"):
        secrets.create(name, "value")
    assert not file_store.exists()


@pytest.mark.parametrize("name", ["A", "_x", "AWS_ACCESS_KEY", "key_2"])
def test_create_accepts_env_var_names(file_store: Path, name: str) -> None:
    assert secrets.create(name, "v").name == name


def test_store_file_is_private_and_replaced_atomically(file_store: Path) -> None:
    secrets.create("A", "1")
    assert _mode(file_store) == 0o600
    secrets.modify("A", "2")
    assert _mode(file_store) == 0o600
    assert _mode(file_store.with_suffix(".lock")) == 0o600
    assert sorted(p.name for p in file_store.parent.iterdir()) == ["secrets.json", "secrets.lock"]


def test_corrupt_store_is_reported_not_overwritten(file_store: Path) -> None:
    file_store.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        secrets.create("A", "1")
    assert file_store.read_text() == "{not json"


def _create_many(locator: str, prefix: str, count: int, start: "multiprocessing.synchronize.Barrier") -> None:
    os.environ["BEAMRAY_SECRETS"] = locator
    start.wait(60)  # both processes imported and ready: their writes overlap
    for i in range(count):
        secrets.create(f"{prefix}_{i}", f"{prefix}-{i}")


def test_concurrent_writers_in_two_processes_both_survive(file_store: Path) -> None:
    """Without the flock, about half of these writes are lost (read-modify-write races)."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    workers = [context.Process(target=_create_many, args=(f"file:{file_store}", prefix, 100, start))
               for prefix in ("LEFT", "RIGHT")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    names = {record.name for record in secrets.list_secrets()}
    assert names == {f"{prefix}_{i}" for prefix in ("LEFT", "RIGHT") for i in range(100)}
    assert secrets.load("RIGHT_99") == "RIGHT-99"
    assert _mode(file_store) == 0o600


def test_private_value_is_made_once_beside_the_store_and_never_listed(file_store: Path) -> None:
    made = []
    first = secrets.private_value("signing_key", lambda: made.append(1) or "k" * 64)
    assert first == secrets.private_value("signing_key", lambda: made.append(1) or "other") == "k" * 64
    assert made == [1]
    key_file = file_store.parent / "signing_key"
    assert key_file.read_text() == "k" * 64 and _mode(key_file) == 0o600
    assert secrets.list_secrets() == []


# --- on the cluster: the KV backend, and secrets reaching tasks -----------------------------------

@function(cpu=0.25, retries=0, secrets=["BEAMRAY_TEST_SECRET"])
def read_secret():
    return os.environ["BEAMRAY_TEST_SECRET"]


@function(cpu=0.25, retries=0, secrets=["BEAMRAY_TEST_SECRET", "BEAMRAY_NO_SUCH_SECRET"])
def read_missing_secret():
    return "unreachable"


@pytest.mark.cluster
def test_secret_reaches_a_task_as_env_var(ray_cluster: dict) -> None:
    with _fresh_secret("BEAMRAY_TEST_SECRET", "s3cr3t"):
        assert read_secret.remote() == "s3cr3t"
        secrets.modify("BEAMRAY_TEST_SECRET", "rotated")
        assert read_secret.remote() == "rotated"


@pytest.mark.cluster
def test_missing_secret_fails_the_task_naming_it(ray_cluster: dict) -> None:
    with _fresh_secret("BEAMRAY_TEST_SECRET", "x"):
        with pytest.raises(RemoteExecutionError, match="BEAMRAY_NO_SUCH_SECRET"):
            read_missing_secret.remote()


@pytest.mark.cluster
def test_kv_backend_round_trip_hides_reserved_keys(ray_cluster: dict) -> None:
    backend = secrets._KVBackend()
    name = f"KV_TEST_{uuid.uuid4().hex[:8]}"
    assert backend.insert(name, {"value": "1", "created_at": 1.0, "updated_at": 1.0})
    assert not backend.insert(name, {"value": "2", "created_at": 2.0, "updated_at": 2.0})
    try:
        assert backend.get(name)["value"] == "1"
        assert backend.update(name, "3", 5.0) == {"value": "3", "created_at": 1.0, "updated_at": 5.0}
        key = backend.private_value("signing_key", lambda: "a" * 64)
        assert backend.private_value("signing_key", lambda: "b" * 64) == key
        listed = backend.read()
        assert name in listed and not any(n.startswith("beamray/") for n in listed)
        assert backend.get("beamray/signing_key") is None
        assert not backend.remove("beamray/signing_key")
    finally:
        assert backend.remove(name)
    assert backend.get(name) is None and not backend.remove(name)


class _fresh_secret:
    """Create a secret in the cluster's store for one test, and delete it afterwards."""

    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def __enter__(self) -> None:
        try:
            secrets.delete(self.name)
        except SecretNotFoundError:
            pass
        secrets.create(self.name, self.value)

    def __exit__(self, *exc: object) -> None:
        secrets.delete(self.name)
