"""The user's reality: Beam docs examples, unchanged, driven only through the ``beamray`` command.

Every project is a folder of its own holding ``app.py`` that does ``from beam import …`` (copied from
``apps/<name>/`` into a temporary folder, so no two share a parent). The whole package shares one fresh
``HOME`` and ``BEAMRAY_HOME`` (no Ray token, no cluster, no config) and talks to its cluster only through
``beamray`` subprocesses and real HTTP/WebSocket clients. The cluster it starts is stopped when the
package ends, before the rest of the suite starts its own (one embedded cluster at a time).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

APPS = Path(__file__).parent / "apps"
BEAMRAY = [shutil.which("beamray") or "beamray"]  # the console script, as a user types it


class User:
    """A new Beam user on a fresh machine: their own home, projects and shell."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("BEAMRAY_", "RAY_")) and key not in ("PYTHONPATH",)}
        self.env.update(HOME=str(self.home), BEAMRAY_HOME=str(self.home / ".beamray"),
                        RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")

    def project(self, name: str, folder: str | None = None) -> Path:
        """A copy of ``apps/<name>`` in a folder of its own, as a user's project checkout."""
        target = self.root / "projects" / (folder or name)
        shutil.copytree(APPS / name, target)
        return target

    def beamray(self, *args: str, cwd: Path | None = None, timeout: float = 240, check: bool = True,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """``beamray ARGS…`` typed in ``cwd``; with ``check``, a non-zero exit fails the test with its output."""
        result = subprocess.run([*BEAMRAY, *args], cwd=cwd or self.root, env={**self.env, **(env or {})},
                                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            pytest.fail(f"`beamray {' '.join(args)}` exited {result.returncode}\n"
                        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def deploy(self, project: Path, target: str, *extra: str) -> dict[str, Any]:
        """``beamray deploy TARGET --json`` in ``project``: the contract's deploy result."""
        return json.loads(self.beamray("deploy", target, *extra, "--json", cwd=project).stdout)

    def config(self) -> dict[str, Any]:
        return json.loads(self.beamray("config", "show", "--json").stdout)

    def http(self, authorized: bool = True) -> httpx.Client:
        """An HTTP client for the gateway the user's config shows, with their token when ``authorized``."""
        shown = self.config()
        headers = {"Authorization": f"Bearer {shown['token']}"} if authorized else {}
        return httpx.Client(base_url=shown["gateway_url"], headers=headers, timeout=120)


@pytest.fixture(scope="package")
def user(tmp_path_factory: pytest.TempPathFactory):
    """One fresh user for the package; their embedded cluster is stopped at the end."""
    person = User(tmp_path_factory.mktemp("user"))
    yield person
    person.beamray("cluster", "down", check=False, timeout=120)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.25, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
