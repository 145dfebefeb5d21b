"""A KubeRay cluster on a laptop: ``beamray cluster up --simulate cluster/`` (an overlay of k8s/kuberay's
base, shrunk to a few 1–2 CPU nodes with 2 s idle timeouts), started once for the package with a fresh
``HOME`` and stopped at its end. Programs are Beam's, run through the ``beamray`` command; nodes are
watched through ``beamray cluster status --json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.conftest import User, wait_for

APPS = Path(__file__).parent / "apps"
OVERLAY = Path(__file__).parent / "cluster"


class SimulatedUser(User):
    """A user whose cluster is the simulated RayCluster; projects come from ``tests/simulate/apps``."""

    def project(self, name: str, folder: str | None = None) -> Path:
        import shutil

        target = self.root / "projects" / (folder or name)
        shutil.copytree(APPS / name, target)
        return target

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's alive nodes as ``cluster status --json`` shows them."""
        return json.loads(self.beamray("cluster", "status", "--json").stdout)["nodes"]

    def nodes_of(self, group: str) -> list[dict[str, Any]]:
        return [node for node in self.nodes() if node["group"] == group]


@pytest.fixture(scope="package")
def user(tmp_path_factory: pytest.TempPathFactory):
    person = SimulatedUser(tmp_path_factory.mktemp("user"))
    person.beamray("cluster", "up", "--simulate", str(OVERLAY), timeout=180)
    yield person
    person.beamray("cluster", "down", check=False, timeout=120)


__all__ = ["wait_for"]
