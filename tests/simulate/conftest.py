"""A KubeRay cluster on a laptop: ``beamray cluster up --simulate OVERLAY`` (an overlay of k8s/kuberay's
base, shrunk to a few 1–2 CPU nodes with 2 s idle timeouts), started once for a test module with a fresh
``HOME`` and stopped at its end, so there is never more than one. ``user``: ``cluster/`` (cpu and a10g
groups); ``gpu_user``: ``gpu_cluster/`` (h100 and rtx4090 groups). Programs are Beam's, run through the
``beamray`` command; nodes are watched through ``beamray cluster status --json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.conftest import User, wait_for

APPS = Path(__file__).parent / "apps"
OVERLAY = Path(__file__).parent / "cluster"
GPU_OVERLAY = Path(__file__).parent / "gpu_cluster"


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


_running: list[Path] = []  # the overlay of the simulated cluster that is up, if any


def _simulated(tmp_path_factory: pytest.TempPathFactory, overlay: Path):
    """A fresh user whose ``cluster up --simulate overlay`` runs until the generator is closed."""
    if _running:
        pytest.fail(f"one simulated cluster at a time: {_running[0].name} is still up, {overlay.name} asked for")
    person = SimulatedUser(tmp_path_factory.mktemp(overlay.name))
    _running.append(overlay)
    try:
        person.beamray("cluster", "up", "--simulate", str(overlay), timeout=180)
        yield person
    finally:
        person.beamray("cluster", "down", check=False, timeout=120)
        _running.remove(overlay)


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory):
    """The user of the ``cluster/`` overlay: cpu 0..2, a10g 0..1, h100 unable to grow."""
    yield from _simulated(tmp_path_factory, OVERLAY)


@pytest.fixture(scope="module")
def gpu_user(tmp_path_factory: pytest.TempPathFactory):
    """The user of the ``gpu_cluster/`` overlay: h100 0..1 and rtx4090 0..1 nodes, nothing else can grow."""
    yield from _simulated(tmp_path_factory, GPU_OVERLAY)


__all__ = ["wait_for"]
