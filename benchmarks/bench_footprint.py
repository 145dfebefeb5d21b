"""Idle memory footprint: beamray's embedded head with Serve and its gateway vs raw ``ray start`` + Serve.

Both clusters run as their own session (``setsid``), so every process of a cluster, workers and Serve's
actors included, shares the session id of the process that started it; the figure is the sum of their
PSS (``/proc/PID/smaps_rollup``: shared pages split between the processes that map them) after an idle
settle. The raw side is Ray's defaults with the dashboard, plus ``serve.start()``; the driver that
started Serve has exited on both sides. Goal (issue 16): beamray/raw <= 1.3.

    python benchmarks/bench_footprint.py [--settle 10] [--json out.json]
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

GOAL = 1.3
_SERVE = ("import ray, sys; from ray import serve; ray.init(address=sys.argv[1]); "
          "serve.start(http_options={'host': '127.0.0.1', 'port': int(sys.argv[2])})")


def session_pss(sid: int) -> tuple[float, int]:
    """MiB of PSS of every process in session ``sid``, and how many processes that is."""
    total_kib, count = 0, 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            # after the command name: state, ppid, pgrp, session
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[3]) != sid:
                continue
            for line in (proc / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
                    count += 1
    return total_kib / 1024, count


def raw_footprint(settle: float) -> tuple[float, int]:
    """``ray start --head --block`` (dashboard on) plus ``serve.start()``, idle, in a temp dir of its own."""
    temp = tempfile.mkdtemp(prefix="beamray-bench-raw-")
    port, env = common.free_port(), dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
                                         RAY_USAGE_STATS_ENABLED="0")
    for key in ("RAY_ADDRESS", "BEAMRAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    # Token auth like beamray's head, with a token of its own given to head and driver alike (Ray would
    # otherwise turn auth on from ~/.ray/auth_token, which need not match what the driver reads).
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    head = subprocess.Popen(
        # On loopback, as beamray's head: this machine's own address is not reachable from itself here.
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={common.free_port()}",
         f"--ray-client-server-port={common.free_port()}", f"--dashboard-agent-listen-port={common.free_port()}",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for _ in range(5):  # the GCS may not answer yet
            started = subprocess.run([sys.executable, "-c", _SERVE, f"127.0.0.1:{port}", str(common.free_port())],
                                     env=env, capture_output=True, text=True, timeout=180)
            if started.returncode == 0:
                break
            time.sleep(2)
        else:
            raise click.ClickException(f"raw Serve did not start: {started.stderr.strip()[-600:]}")
        time.sleep(settle)
        return session_pss(head.pid)
    finally:
        os.killpg(head.pid, 15)
        head.wait(60)
        shutil.rmtree(temp, ignore_errors=True)


@click.command()
@click.option("--settle", default=10.0, show_default=True, help="Idle seconds before measuring.")
@click.option("--json", "json_path", default=None, help="Also write the figures to this JSON file.")
def main(settle: float, json_path: str | None) -> None:
    """Sum of PSS of every cluster process, idle: beamray (head + Serve + gateway) vs raw Ray + Serve."""
    machine = common.machine_info()
    common.print_machine(machine)
    raw_mib, raw_count = raw_footprint(settle)
    with common.isolated_cluster() as state:
        from beamray import deploy, head

        deploy.ensure_serve()
        time.sleep(settle)
        beam_mib, beam_count = session_pss(head.embedded_state()["pid"])
        del state
    ratio = beam_mib / raw_mib
    click.echo(f"raw Ray + Serve (dashboard on): {raw_mib:.0f} MiB PSS in {raw_count} processes")
    click.echo(f"beamray head + Serve + gateway: {beam_mib:.0f} MiB PSS in {beam_count} processes")
    click.echo(common.ratio_line("beamray/raw idle PSS", ratio, f"<= {GOAL}", ratio <= GOAL))
    common.write_json(json_path, {"benchmark": "footprint", "machine": machine, "raw_mib": raw_mib,
                                  "raw_processes": raw_count, "beamray_mib": beam_mib,
                                  "beamray_processes": beam_count, "ratio": ratio, "goal": GOAL,
                                  "met": ratio <= GOAL})


if __name__ == "__main__":
    main()
