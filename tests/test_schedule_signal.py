"""``@schedule`` on the task service and ``experimental.Signal`` across apps, on the session cluster."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from beamray import config, experimental, schedule, secrets
from beamray.adapters.schedule import upcoming
from beamray import deploy
from beamray.tasks import client

REPO = Path(__file__).resolve().parents[1]


def test_invalid_cron_fails_at_decoration():
    with pytest.raises(ValueError, match="Invalid schedule 'every 1d'"):
        schedule(when="every 1d")
    with pytest.raises(ValueError, match="Invalid schedule"):
        schedule(when="61 * * * *")
    with pytest.raises(ValueError, match="Invalid schedule '0 0 30 2 \\*': no date ever matches it"):
        schedule(when="0 0 30 2 *")  # croniter.is_valid accepts a 30th of February


def test_upcoming_lists_the_next_three_utc_times():
    import datetime

    start = datetime.datetime(2024, 8, 30, 17, 30, tzinfo=datetime.timezone.utc)
    assert [t.hour for t in upcoming("@hourly", after=start)] == [18, 19, 20]
    assert all(t.minute == 0 and t.tzinfo is not None for t in upcoming("@hourly", after=start))


@pytest.mark.cluster
def test_schedule_fires_is_replaced_and_is_stopped(ray_cluster):
    from tests.apps import schedule_app

    handle = schedule_app.ticker
    first = deploy.deploy(handle.parent.deployable_spec(handle.func), code_root=REPO)
    time.sleep(7)
    assert len(client.list_tasks(name="ticker", limit=1000)) >= 2, "fires at least twice in seven seconds"
    deadline = time.monotonic() + 90  # the first run also starts a worker with the app's code
    while not any(t["status"] == "COMPLETE" and t["result"] == {"tick": True}
                  for t in client.list_tasks(name="ticker", limit=1000)):
        assert time.monotonic() < deadline, "no scheduled run completed"
        time.sleep(0.5)

    second = deploy.deploy(handle.parent.deployable_spec(handle.func), code_root=REPO)
    records = {r.version: r.status for r in deploy.list_deployments() if r.name == "ticker"}
    assert records[first.version] == "stopped" and records[second.version] == "running"

    deploy.stop("ticker")
    time.sleep(1)
    before = len(client.list_tasks(name="ticker", limit=1000))
    time.sleep(5)
    assert len(client.list_tasks(name="ticker", limit=1000)) == before


@pytest.mark.cluster
def test_signal_set_in_one_process_runs_the_handler_in_a_deployed_replica(ray_cluster):
    from tests.apps import signal_app

    deploy.ensure_serve()
    handle = signal_app.inference
    record = deploy.deploy(handle.parent.spec_for(handle.func), code_root=REPO)
    headers = {"Authorization": f"Bearer {secrets.gateway_token()}"}
    url = f"http://127.0.0.1:{config.http_port()}{record.route_prefix}"
    assert httpx.post(url, headers=headers, timeout=60).json() == {"reloads": 0}

    experimental.Signal(name="reload-model").set(ttl=60)
    deadline = time.monotonic() + 15
    while httpx.post(url, headers=headers, timeout=60).json()["reloads"] < 1:
        assert time.monotonic() < deadline, "the handler did not run within 15 s of set()"
        time.sleep(0.25)
    time.sleep(3)  # clear_after_interval=2 cleared it after the first run
    assert not experimental.Signal(name="reload-model").is_set()
    count = httpx.post(url, headers=headers, timeout=60).json()["reloads"]
    time.sleep(2.5)
    assert httpx.post(url, headers=headers, timeout=60).json()["reloads"] == count
