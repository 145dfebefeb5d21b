"""``beamray secret``: Beam's lines, exit codes and JSON, through click's CliRunner."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from beamray import secrets
from beamray.cli.secret import COMMANDS, humanize_age, secret


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BEAMRAY_SECRETS", f"file:{tmp_path / 'secrets.json'}")
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(secret, list(args), catch_exceptions=False)

    return invoke


def test_commands_export_the_group() -> None:
    assert COMMANDS == [secret]


def test_create_prints_beams_line(run) -> None:
    result = run("create", "AWS_ACCESS_KEY", "ASIAY34FZKBOKMUTVV7A")
    assert result.exit_code == 0
    assert result.output == "=> Created secret with name: 'AWS_ACCESS_KEY'\n"
    assert secrets.load("AWS_ACCESS_KEY") == "ASIAY34FZKBOKMUTVV7A"


def test_show_prints_the_value(run) -> None:
    run("create", "AWS_ACCESS_KEY", "ASIAY34FZKBOKMUTVV7A")
    result = run("show", "AWS_ACCESS_KEY")
    assert result.exit_code == 0
    assert result.output == "=> Secret 'AWS_ACCESS_KEY': ASIAY34FZKBOKMUTVV7A\n"


@pytest.mark.parametrize("command", ["modify", "update"])
def test_modify_and_its_alias_update(run, command: str) -> None:
    run("create", "AWS_ACCESS_KEY", "old")
    result = run(command, "AWS_ACCESS_KEY", "new")
    assert result.exit_code == 0
    assert result.output == "=> Modified secret 'AWS_ACCESS_KEY'\n"
    assert secrets.load("AWS_ACCESS_KEY") == "new"


def test_delete_prints_beams_line(run) -> None:
    run("create", "AWS_ACCESS_KEY", "v")
    result = run("delete", "AWS_ACCESS_KEY")
    assert result.exit_code == 0
    assert result.output == "=> Deleted secret 'AWS_ACCESS_KEY'\n"
    assert secrets.list_secrets() == []


def test_list_prints_a_table_with_ages_and_a_count(run) -> None:
    run("create", "AWS_KEY", "a")
    run("create", "AWS_REGION", "b")
    result = run("list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert re.fullmatch(r"  Name\s+Last Updated\s+Created", lines[0])
    assert set(lines[1].strip()) == {"─"}
    assert re.fullmatch(r"  AWS_KEY\s+just now\s+just now", lines[2])
    assert re.fullmatch(r"  AWS_REGION\s+just now\s+just now", lines[3])
    assert lines[4:] == ["", "  2 items"]
    assert "a" not in lines[2].split() and "b" not in lines[3].split()  # never values


def test_list_empty_says_zero_items(run) -> None:
    result = run("list")
    assert result.exit_code == 0
    assert result.output.splitlines()[-1] == "  0 items"


def test_list_json_has_names_and_times_but_no_values(run) -> None:
    run("create", "AWS_KEY", "topsecret")
    result = run("list", "--json")
    assert result.exit_code == 0
    assert "topsecret" not in result.output
    [entry] = json.loads(result.output)
    assert set(entry) == {"name", "created_at", "updated_at"}
    assert entry["name"] == "AWS_KEY"
    assert entry["created_at"].endswith("+00:00")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "NOPE"), "Secret 'NOPE' not found"),
        (("modify", "NOPE", "v"), "Secret 'NOPE' not found"),
        (("delete", "NOPE"), "Secret 'NOPE' not found"),
        (("create", "", "v"), "must not be empty"),
        (("create", "MY-KEY", "v"), "Invalid secret name 'MY-KEY'"),
        (("create", "1ABC", "v"), "Invalid secret name '1ABC'"),
    ],
)
def test_errors_exit_1_with_a_message(run, args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output
    assert "Traceback" not in result.output


def test_duplicate_create_exits_1(run) -> None:
    run("create", "AWS_KEY", "a")
    result = run("create", "AWS_KEY", "b")
    assert result.exit_code == 1
    assert "Secret 'AWS_KEY' already exists" in result.output
    assert secrets.load("AWS_KEY") == "a"


def test_help_lists_commands_once(run) -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in ("create", "list", "show", "modify", "delete"):
        assert re.search(rf"^\s+{name}\s", result.output, re.MULTILINE)
    assert not re.search(r"^\s+update\s", result.output, re.MULTILINE)


@pytest.mark.parametrize(
    ("age", "text"),
    [(0, "just now"), (1, "1 second ago"), (20, "20 seconds ago"), (60, "1 minute ago"), (150, "2 minutes ago"),
     (19 * 3600 + 5, "19 hours ago"), (86400, "1 day ago"), (45 * 86400, "1 month ago"),
     (800 * 86400, "2 years ago"), (-5, "just now")],
)
def test_humanize_age(age: int, text: str) -> None:
    now = time.time()
    assert humanize_age(now - age, now) == text
