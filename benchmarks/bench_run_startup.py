"""``beamray run hello.py`` wall time vs a raw Ray script, both as subprocesses on an already-up cluster.

hello.py is an unchanged Beam program (``from beam import function``, one ``.remote()`` call). The raw
script does ``ray.init(address=<the cluster's GCS address>)`` and one task with the same resource ask.
Both run with the same environment (plus ``RAY_AUTH_MODE=token`` and
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which beamray would set itself) and the same interpreter, started
directly rather than through a pyenv shim. Goal (issue): beamray/raw_ray wall time <= 1.3.

    python benchmarks/bench_run_startup.py [--trials 7] [--json out.json]
    python benchmarks/bench_run_startup.py --profile   # also: import costs, cProfile of one `beamray run`
"""

from __future__ import annotations

import os
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

HELLO = '''\
from beam import function


@function(cpu=1)
def hello(name):
    return f"hello {name}"


if __name__ == "__main__":
    print(hello.remote("world"))
'''

RAW_HELLO = '''\
import sys

import ray


@ray.remote(num_cpus=1, memory=128 * 2**20)
def hello(name):
    return f"hello {name}"


if __name__ == "__main__":
    ray.init(address=sys.argv[1])
    print(ray.get(hello.remote("world")))
'''


def beamray_script() -> str:
    """The ``beamray`` console script of this interpreter (not a pyenv shim, which adds its own start-up)."""
    beside = Path(sys.executable).parent / "beamray"
    found = str(beside) if beside.exists() else shutil.which("beamray")
    if not found:
        raise click.ClickException("no `beamray` console script: run `pip install -e .` in the repository")
    return found


def _run(command: list[str], env: dict[str, str], cwd: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or "hello world" not in result.stdout:
        raise click.ClickException(f"{' '.join(command)} failed (rc {result.returncode}):\n"
                                   f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return elapsed


def _profile(beamray: list[str], raw: list[str], env: dict[str, str], cwd: str) -> None:
    click.echo("\n-- start-up pieces (s, median of 3 runs) --")
    pieces = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import ray'": [sys.executable, "-c", "import ray"],
        "python -c 'import beamray.cli.main'": [sys.executable, "-c", "import beamray.cli.main"],
        "beamray --help": [beamray[0], "--help"],
    }
    for label, command in pieces.items():
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=True)
            runs.append(time.perf_counter() - start)
        click.echo(f"{common.median(runs):6.3f}  {label}")
    for label, script in (("beamray run hello.py", beamray), ("raw_hello.py", raw[1:])):
        out = subprocess.run([sys.executable, "-m", "cProfile", "-s", "cumulative", *script], env=env, cwd=cwd,
                             capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.strip() and "hello world" not in line]
        click.echo(f"\n-- cProfile of one `{label}` (cumulative, top 30) --")
        click.echo("\n".join(lines[:36]))


@click.command()
@click.option("--trials", default=7, show_default=True, help="Timed runs per side.")
@click.option("--warmup", default=1, show_default=True, help="Untimed runs per side first.")
@click.option("--profile", is_flag=True, help="After timing, show start-up pieces and cProfile one run of each.")
@click.option("--json", "json_path", default=None, help="Also write the figures to this JSON file.")
def main(trials: int, warmup: int, profile: bool, json_path: str | None) -> None:
    """Wall time of `beamray run hello.py` against a raw Ray script doing the same."""
    workdir = Path(tempfile.mkdtemp(prefix="beamray-bench-run-"))
    try:
        (workdir / "hello.py").write_text(HELLO)
        (workdir / "raw_hello.py").write_text(RAW_HELLO)
        with common.isolated_cluster(connect=False) as state:
            env = dict(os.environ, RAY_AUTH_MODE="token", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
            beamray = [beamray_script(), "run", "hello.py"]
            raw = [sys.executable, "raw_hello.py", state["address"]]
            cases = {"raw_ray": lambda: _run(raw, env, str(workdir)),
                     "beamray_run": lambda: _run(beamray, env, str(workdir))}
            machine = common.machine_info()
            common.print_machine(machine)
            common.header("`beamray run hello.py` vs `python raw_hello.py <gcs address>`, wall time", trials,
                          f"cluster CPUs {state['cpus']:g}, already up; {beamray[0]} and {sys.executable}")
            common.warm_up(cases, warmup)
            seconds = common.interleaved(cases, trials)
            medians = {name: common.median(values) for name, values in seconds.items()}
            for name, values in seconds.items():
                click.echo(f"{name:12s} median {medians[name]:.3f} s  p99 {common.percentile(values, 99):.3f} s  "
                           f"mean±std {common.fmt_mean_std(values, digits=3)} s  trials {[round(v, 2) for v in values]}")
            ratio = medians["beamray_run"] / medians["raw_ray"]
            paired = common.paired_ratio(seconds["beamray_run"], seconds["raw_ray"])
            click.echo(f"per-trial ratio, median: {paired:.2f}x")
            click.echo(f"beamray - raw_ray = {medians['beamray_run'] - medians['raw_ray']:+.3f} s")
            click.echo(common.ratio_line("beamray/raw_ray wall time", ratio, f"<= {GOAL}", ratio <= GOAL))
            machine["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
            common.write_json(json_path, {
                "benchmark": "run_startup", "trials": trials, "machine": machine, "cluster_cpus": state["cpus"],
                "seconds": seconds, "median_s": medians, "ratio": ratio, "paired_ratio": paired, "goal": GOAL, "met": ratio <= GOAL,
            })
            if profile:
                _profile(beamray, raw, env, str(workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
