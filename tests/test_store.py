"""The record store on a real redis-server: prefix scans read an index, never SCAN the whole database."""

from __future__ import annotations


import pytest

from beamray.store import RedisStore
from tests.conftest import redis_server


@pytest.fixture()
def redis_url(tmp_path):
    with redis_server(tmp_path) as url:
        yield url


def _scan_calls(url: str) -> int:
    import redis

    return int(redis.Redis.from_url(url).info("commandstats").get("cmdstat_scan", {}).get("calls", 0))


def test_a_prefix_scan_reads_only_its_keys_without_walking_the_database(redis_url):
    store = RedisStore(redis_url)
    store.scan("")  # a new database is indexed (empty) on first use
    store.put_many({f"tasks/t{n:05d}": b"task" for n in range(3000)})
    store.put("deployments/svc/v000001", b"record")
    store.put("deployments/svc/v000002", b"newer")
    store.put("deployments/svcx/v000001", b"other name")
    scans_before = _scan_calls(redis_url)

    assert store.scan("deployments/svc/") == {"deployments/svc/v000001": b"record",
                                              "deployments/svc/v000002": b"newer"}
    assert len(store.scan("tasks/")) == 3000
    store.delete("deployments/svc/v000001")
    assert store.scan("deployments/svc/") == {"deployments/svc/v000002": b"newer"}
    assert store.get("deployments/svc/v000001") is None
    assert _scan_calls(redis_url) == scans_before


def test_keys_written_before_the_index_are_found_once_indexed(redis_url):
    import redis

    raw = redis.Redis.from_url(redis_url)
    raw.set("beamray:deployments/old/v000001", b"written by an older beamray")
    raw.set("someone-elses-key", b"not ours")
    store = RedisStore(redis_url)
    assert store.scan("deployments/") == {"deployments/old/v000001": b"written by an older beamray"}
    scans = _scan_calls(redis_url)
    assert RedisStore(redis_url).scan("deployments/") == {"deployments/old/v000001": b"written by an older beamray"}
    assert _scan_calls(redis_url) == scans  # indexed once per database, not once per process
    assert store.scan("someone") == {}
