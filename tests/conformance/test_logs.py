"""``beamray logs``: what a deployment's handler printed, a task's own lines after it ended, ``-f`` live
lines until Ctrl-C, ``--tail`` / ``--since``, and one clear error for an unknown id.

CLI: beam-api.md §10 (``logs``); issue 13 item 3.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
import uuid

import pytest

from tests.conformance.conftest import BEAMRAY, wait_for
from tests.conformance.support import deployed, enqueue, finished, gateway, remove


def logs(user, *args: str) -> list[str]:
    return user.beamray("logs", *args).stdout.splitlines()


def test_deployment_logs_show_what_the_handler_printed_and_tail_limits_them(user):
    word = f"alpha-{uuid.uuid4().hex[:6]}"
    with deployed(user, user.project("logs_endpoint"), "app.py:speak") as deployment:
        assert gateway(user).post(deployment["url"], json={"word": word, "lines": 5}).status_code == 200
        said = [f"{word} {i}" for i in range(5)]
        shown = wait_for(lambda: (lines := logs(user, "--deployment-id", deployment["deployment_id"]))
                         and said[-1] in lines and lines, 30, what="the handler's lines in `beamray logs`")
        assert [line for line in shown if line.startswith(word)] == said
        by_name = logs(user, "--deployment-id", "speak", "--tail", "2")
        assert [line for line in by_name if line.startswith(word)] == said[-2:]
        records = [json.loads(line) for line in logs(user, "--deployment-id", "speak", "--json")]
        assert {"source", "stream", "message"} == set(records[0])
        assert {"stream": "stdout", "message": said[0]}.items() <= next(
            r for r in records if r["message"] == said[0]).items()


def test_task_logs_show_only_that_task_after_it_ended_and_since_leaves_old_ones_out(user):
    deployment = user.deploy(user.project("logs_queue"), "app.py:speak")
    try:
        first, second = f"bravo-{uuid.uuid4().hex[:6]}", f"charlie-{uuid.uuid4().hex[:6]}"
        first_id = enqueue(user, deployment["url"], {"word": first})
        finished(user, first_id)
        container = finished(user, enqueue(user, deployment["url"], {"word": second}))["container_id"]
        shown = logs(user, "--task-id", first_id)
        assert f"task says {first}" in shown and f"task says {second}" not in shown, shown
        assert f"task says {first}" in logs(user, "--task-id", first_id, "--since", "10m")
        time.sleep(2)
        assert logs(user, "--task-id", first_id, "--since", "1s") == []
        both = logs(user, "--deployment-id", deployment["deployment_id"])
        assert {f"task says {first}", f"task says {second}"} <= set(both), both
        assert f"task says {second}" in logs(user, "--container-id", container)
    finally:
        remove(user, "speak")


def test_follow_receives_a_line_printed_after_it_started_and_ctrl_c_ends_it(user):
    with deployed(user, user.project("logs_endpoint", folder="logs_follow"), "app.py:speak",
                  "--name", "follow") as deployment:
        http = gateway(user)
        assert http.post(deployment["url"], json={"word": "before"}).status_code == 200
        follower = subprocess.Popen([*BEAMRAY, "logs", "-f", "--deployment-id", "follow"], cwd=user.root,
                                    env=user.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [seen.put(line.rstrip("\n")) for line in follower.stdout],
                         daemon=True).start()
        try:
            wait_for(lambda: _until(seen, "before 0"), 60, what="the follow to print the earlier line")
            word = f"delta-{uuid.uuid4().hex[:6]}"
            assert http.post(deployment["url"], json={"word": word}).status_code == 200
            wait_for(lambda: _until(seen, f"{word} 0"), 30, what="the follow to print the new line")
        finally:
            follower.send_signal(signal.SIGINT)
            _, stderr = follower.communicate(timeout=30)
        assert follower.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr


def _until(lines: queue.Queue, wanted: str) -> bool:
    while True:
        try:
            if lines.get(timeout=0.2) == wanted:
                return True
        except queue.Empty:
            return False


def test_unknown_ids_get_one_clear_error(user):
    for flag, name in (("--deployment-id", "deployment"), ("--task-id", "task"), ("--container-id", "container")):
        result = user.beamray("logs", flag, "no-such-id", check=False)
        assert result.returncode == 1, result
        assert result.stderr.startswith(f"Error: No {name} 'no-such-id'"), result.stderr
        assert "Traceback" not in result.stderr


def test_since_takes_durations_and_iso_times():
    from beamray.logs import parse_since

    assert parse_since("30m", now=10_000) == 10_000 - 1800
    assert parse_since("2h", now=10_000) == 10_000 - 7200
    assert parse_since("2026-12-01T15:00:00") == parse_since("2026-12-01T15:00:00Z") == 1796137200
    with pytest.raises(ValueError, match="--since must look like 30m"):
        parse_since("yesterday")


def test_lines_are_whole_and_leave_rays_markers_out():
    from beamray.logs import LogSource, _lines

    chunks = iter([":actor_name:TaskWorker\nfir", "st\nsecond\r\n", "third"])
    assert [line.message for line in _lines(LogSource("c"), "out", chunks)] == ["first", "second", "third"]
