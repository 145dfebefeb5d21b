"""Deployment records in the store: listing reads records only; specs written by older versions still load."""

from __future__ import annotations

from beamray.registry import Registry, new_record
from beamray.store import SqliteStore


class CountingStore(SqliteStore):
    """A real SQLite store that remembers which values a scan returned."""

    scanned: list[str]

    def scan(self, prefix: str) -> dict[str, bytes]:
        found = super().scan(prefix)
        self.scanned = list(found)
        return found


def _record(version: int = 1):
    return new_record(name="svc", kind="endpoint", version=version, authorized=True, handler="app:svc",
                      gateway_url="http://127.0.0.1:8000")


def test_listing_records_reads_no_pickled_specs(tmp_path):
    store = CountingStore(str(tmp_path / "store.db"))
    registry = Registry(store)
    registry.save(_record(), spec_blob=b"x" * 100_000, launch_blob=b"y" * 100_000)
    [listed] = registry.records()
    assert listed.name == "svc" and store.scanned == ["deployments/svc/v000001"]
    assert registry.spec_blob(listed) == b"x" * 100_000 and registry.launch_blob(listed) == b"y" * 100_000


def test_specs_stored_beside_records_by_older_versions_still_load_and_are_removed(tmp_path):
    store = SqliteStore(str(tmp_path / "store.db"))
    registry = Registry(store)
    record = _record()
    registry.save(record)
    store.put("deployments/svc/v000001.spec", b"old spec")  # where beamray 0.1 kept it
    assert registry.spec_blob(record) == b"old spec"
    registry.remove(record)
    assert store.scan("deployments/") == {} and registry.records() == []
