"""Beam's "Scheduled Jobs": ``beamray deploy app.py:task`` lists the upcoming runs; a new version disables
the previous schedule; ``beamray deployment stop <ID>`` stops it."""

from __future__ import annotations

import datetime
import json
import re

import pytest

from tests.conformance.support import remove

NAME = "weekly-task"
UPCOMING = re.compile(r"^  ([123])\. (\d{4}-\d\d-\d\d) 00:00:00 UTC \(.+\)$")


@pytest.fixture(scope="module")
def weekly_task(user):
    """The schedule deployed twice, as a user redeploying it: (first deploy's output, second's JSON)."""
    project = user.project("weekly_schedule")
    try:
        first = user.beamray("deploy", "app.py:task", cwd=project).stdout
        second = user.deploy(project, "app.py:task")
        yield first, second
    finally:
        remove(user, NAME)


def listed(user) -> dict[int, str]:
    """``beamray deployment list --json``: version → status of the weekly task."""
    records = json.loads(user.beamray("deployment", "list", "--json").stdout)
    return {record["version"]: record["status"] for record in records if record["name"] == NAME}


def test_deploy_lists_the_next_three_sunday_midnights(weekly_task):
    output, _ = weekly_task
    lines = output.splitlines()
    assert "=> Deployed 🎉" in lines
    assert lines[lines.index("=> Schedule details") + 1:][:2] == ["Schedule: @weekly", "Upcoming:"]
    runs = [UPCOMING.match(line) for line in lines if UPCOMING.match(line)]
    assert [match.group(1) for match in runs] == ["1", "2", "3"], output
    days = [datetime.date.fromisoformat(match.group(2)) for match in runs]
    assert all(day.weekday() == 6 for day in days), days  # @weekly: 0 0 * * 0, Sundays
    assert [later - earlier for earlier, later in zip(days, days[1:])] == [datetime.timedelta(days=7)] * 2


def test_a_new_version_disables_the_previous_schedule(user, weekly_task):
    _, second = weekly_task
    assert (second["name"], second["kind"]) == (NAME, "schedule")
    statuses = listed(user)
    assert statuses[second["version"]] == "running"
    assert [status for version, status in statuses.items() if version != second["version"]] == ["stopped"]


def test_stop_with_the_deployment_id_the_list_shows(user, weekly_task):
    _, second = weekly_task
    table = user.beamray("deployment", "list").stdout
    rows = [line.split() for line in table.splitlines()]
    (shown_id,) = [row[0] for row in rows if row[1:2] == [NAME] and f"v{second['version']}" in row]
    stopped = user.beamray("deployment", "stop", shown_id).stdout  # the docs stop a job by the listed ID
    assert "Stopped" in stopped and second["deployment_id"] in stopped
    assert set(listed(user).values()) == {"stopped"}


def test_stop_with_the_full_deployment_id(user, weekly_task):
    _, second = weekly_task
    stopped = user.beamray("deployment", "stop", second["deployment_id"]).stdout
    assert "Stopped" in stopped and second["deployment_id"] in stopped
    assert set(listed(user).values()) == {"stopped"}
