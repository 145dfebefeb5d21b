"""Every benchmark of issue 16 in one command: one markdown table of ratios, goal and MET/MISSED per row.

Each benchmark runs as its own process (its own embedded head in a fresh BEAMRAY_HOME, raw Ray / raw
Serve / bare uvicorn side by side in it) and writes ``--json``; this script reads those files and prints
the table and the machine line. Run it alone on the machine, under the cluster lock:

    flock /tmp/beamray-cluster.lock python benchmarks/run_all.py [--quick] [--only map01,footprint] [--keep DIR]

``--quick`` (fewer trials and inputs) finishes in about 10 minutes on the 2-core project machine.
``bench_pod.py`` and ``bench_sandbox.py`` are run when they exist (optional rows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402


@dataclass(frozen=True)
class Step:
    """One benchmark process: its script, arguments (quick, full), and whether it may be missing."""

    name: str
    script: str
    quick: tuple[str, ...]
    full: tuple[str, ...]
    optional: bool = False


STEPS = (
    Step("map01", "bench_function_map.py", ("--inputs", "3000", "--cpu", "0.1", "--trials", "3", "--warmup", "1",
                                            "--fresh-trials", "1"),
         ("--inputs", "3000", "--cpu", "0.1", "--trials", "7", "--fresh-trials", "3")),
    Step("map1", "bench_function_map.py", ("--inputs", "3000", "--cpu", "1", "--trials", "3", "--warmup", "1"),
         ("--inputs", "5000", "--cpu", "1", "--trials", "7")),
    Step("map100k", "bench_function_map.py", ("--inputs", "20000", "--cpu", "1", "--trials", "1", "--warmup", "0"),
         ("--inputs", "100000", "--cpu", "1", "--trials", "3", "--warmup", "0")),
    Step("remote", "bench_function_remote.py", ("--calls", "300", "--trials", "3", "--warmup", "100"), ("--trials", "7",)),
    Step("startup", "bench_run_startup.py", ("--trials", "3",), ("--trials", "7",)),
    Step("http", "bench_endpoint_http.py", ("--trials", "1", "--duration", "2", "--clients", "16",
                                            "--requests", "200", "--warmup", "50", "--ingress", "proxy"),
         ("--trials", "3", "--duration", "5", "--ingress", "proxy")),
    Step("http_haproxy", "bench_endpoint_http.py", ("--trials", "1", "--duration", "2", "--clients", "16",
                                                    "--requests", "200", "--warmup", "50", "--ingress", "haproxy"),
         ("--trials", "3", "--duration", "5", "--ingress", "haproxy")),
    Step("deploy", "bench_endpoint_deploy.py", ("--trials", "1", "--cold-trials", "2"), ("--trials", "5",)),
    Step("tasks_sqlite", "bench_task_queue.py", ("--trials", "1", "--latency-samples", "50"), ("--trials", "5",)),
    Step("tasks_redis", "bench_task_queue.py", ("--trials", "1", "--latency-samples", "50", "--redis"),
         ("--trials", "5", "--redis")),
    Step("queue", "bench_queue.py", ("--ops", "300", "--trials", "3", "--warmup", "100", "--no-redis"), ()),
    Step("footprint", "bench_footprint.py", ("--settle", "5"), ("--settle", "15")),
    Step("pod", "bench_pod.py", ("--trials", "2", "--seconds", "2"), (), optional=True),
    Step("sandbox", "bench_sandbox.py", ("--trials", "3", "--execs", "400", "--idle", "3", "--sandboxes", "4",
                                         "--calls", "10"), (), optional=True),
)


@dataclass(frozen=True)
class Row:
    """One line of the table: what it compares, and how to read figure and verdict from a step's JSON."""

    step: str
    what: str
    goal: str
    read: Callable[[dict[str, Any]], tuple[str, bool | None]]


def _ratio(value: float, goal: float, at_least: bool, detail: str = "") -> tuple[str, bool]:
    return f"**{value:.2f}×**{f' ({detail})' if detail else ''}", value >= goal if at_least else value <= goal


def _map(kind: str, goal: float) -> Callable[[dict[str, Any]], tuple[str, bool]]:
    def read(data: dict[str, Any]) -> tuple[str, bool]:
        part = data[kind]
        tput = part["throughput_median"]
        return _ratio(part["ratios"]["beamray_map"], goal, True,
                      f"{tput['beamray_map']:.0f} vs {tput['raw_ray']:.0f} tasks/s")
    return read


def _http(data: dict[str, Any]) -> dict[str, Any]:
    return data["summary"]


def _alias_rps(data: dict[str, Any]) -> tuple[str, bool]:
    s = _http(data)
    top = str(max(int(c) for c in s["beamray"]["rps"]))
    alias, versioned = s["beamray_alias"]["rps"][top], s["beamray"]["rps"][top]
    return _ratio(alias / versioned, 0.9, True, f"{alias:.0f} vs {versioned:.0f} rps at {top} clients")


def _alias_p50(data: dict[str, Any]) -> tuple[str, bool]:
    s = _http(data)
    extra = s["beamray_alias"]["seq_p50_ms"] - s["beamray"]["seq_p50_ms"]
    return f"**{extra:+.2f} ms** ({s['beamray_alias']['seq_p50_ms']:.2f} vs {s['beamray']['seq_p50_ms']:.2f})", extra <= 1.0


def _uvicorn(data: dict[str, Any]) -> tuple[str, bool]:
    s = _http(data)
    return _ratio(data["ratios"]["rps16_fraction_of_uvicorn"], 0.25, True,
                  f"{s['beamray']['rps']['16']:.0f} vs {s['uvicorn']['rps']['16']:.0f} rps")


def _cold(data: dict[str, Any]) -> tuple[str, bool]:
    beam, raw = data["cold"]["beamray"]["first_request"]["median_s"], data["cold"]["raw"]["first_request"]["median_s"]
    return f"**{beam:.2f} s** (raw Serve {raw:.2f} s)", beam <= 1.0


def _tasks(data: dict[str, Any]) -> tuple[str, bool]:
    tput = {side: common.median(values) for side, values in data["throughput"].items()}
    return _ratio(data["ratio"], 0.8, True, f"{tput['beamray']:.0f} vs {tput['raw_ray']:.0f} tasks/s")


def _optional(data: dict[str, Any]) -> tuple[str, bool | None]:
    """A benchmark this table has no reader for: its numbers one level deep."""
    numbers = {f"{key}.{inner}" if inner else key: value for key, part in data.items()
               for inner, value in (part.items() if isinstance(part, dict) else [("", part)])
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    return ", ".join(f"{key} {value:.3g}" for key, value in numbers.items())[:160], data.get("met")


ROWS = (
    Row("map01", "`.map` 3,000 inputs, `cpu=0.1`, warm cluster, vs raw Ray", "≥ 0.9×", _map("warm", 0.9)),
    Row("map01", "same, first map on a fresh head (new BEAMRAY_HOME)", "≥ 0.9×", _map("fresh", 0.9)),
    Row("map1", "`.map`, `cpu=1`, warm, vs raw Ray", "≥ 0.9× (keep)", _map("warm", 0.9)),
    Row("map100k", "moonshot: `.map` over many trivial inputs vs raw Ray one task per input", "≥ 3×",
        _map("warm", 3.0)),
    Row("remote", "`.remote()` p50 vs raw Ray", "≤ 1.2×",
        lambda d: _ratio(d["p50_ratio"], 1.2, False, f"{d['summary']['beamray']['p50_ms']:.2f} vs "
                                                     f"{d['summary']['raw_ray']['p50_ms']:.2f} ms")),
    Row("startup", "`beamray run hello.py` wall vs raw Ray script", "≤ 1.3×",
        lambda d: _ratio(d["ratio"], 1.3, False, f"{d['median_s']['beamray_run']:.2f} vs {d['median_s']['raw_ray']:.2f} s")),
    Row("http_haproxy", "endpoint seq p50 vs raw Serve (HAProxy ingress, `BEAMRAY_SERVE_INGRESS=haproxy`)", "≤ 1.15×",
        lambda d: _ratio(d["ratios"]["seq_p50_vs_serve_default"], 1.15, False)),
    Row("http_haproxy", "endpoint rps at 16 clients vs bare uvicorn (HAProxy ingress, `BEAMRAY_SERVE_INGRESS=haproxy`)", "≥ 0.25×",
        _uvicorn),
    Row("http_haproxy", "alias URL rps vs versioned (HAProxy ingress)", "≥ 0.9×", _alias_rps),
    Row("http_haproxy", "alias URL seq p50 minus versioned (HAProxy ingress)", "≤ +1 ms", _alias_p50),
    Row("http", "endpoint seq p50 vs raw Serve (Serve's Python proxy, the default)", "≤ 1.15×",
        lambda d: _ratio(d["ratios"]["seq_p50_vs_serve_default"], 1.15, False)),
    Row("http", "endpoint rps at 16 clients vs bare uvicorn (proxy, the default)", "≥ 0.25×", _uvicorn),
    Row("http", "alias URL rps vs versioned (proxy)", "≥ 0.9×", _alias_rps),
    Row("http", "alias URL seq p50 minus versioned (proxy)", "≤ +1 ms", _alias_p50),
    Row("deploy", "deploy to first 200 vs `serve.run`", "≤ 1.2×", lambda d: _ratio(d["deploy_ratio"], 1.2, False)),
    Row("deploy", "cold start, 0 replicas → first response", "≤ 1.0 s", _cold),
    Row("tasks_sqlite", "task queue put → COMPLETE, 1,000 tasks, SQLite records, vs raw Ray", "≥ 0.8×", _tasks),
    Row("tasks_redis", "same, Redis records", "≥ 0.8×", _tasks),
    Row("queue", "`Queue` put/pop ops vs raw Ray actor + deque", "≥ 0.9×",
        lambda d: _ratio(d["ratios"]["beamray/raw_ray"], 0.9, True)),
    Row("footprint", "idle PSS: embedded head + Serve + gateway vs raw Ray + Serve (dashboard on)", "≤ 1.3×",
        lambda d: _ratio(d["ratio"], 1.3, False, f"{d['beamray_mib']:.0f} vs {d['raw_mib']:.0f} MiB")),
    Row("pod", "pod start vs raw actor; rps through the gateway vs direct (bench_pod.py)", "see script",
        lambda d: (f"start **{d['start_ratio']:.2f}×**, proxied/direct rps **{d['throughput_ratio']:.2f}×**", None)),
    Row("sandbox", "sandboxes (bench_sandbox.py)", "see script", _optional),
)


def run_step(step: Step, quick: bool, folder: Path, timeout: float) -> dict[str, Any] | str:
    """Run one benchmark process; its JSON, or why there is none."""
    script = HERE / step.script
    if not script.exists():
        return "not present"
    args = step.quick if quick else step.full
    out, log = folder / f"{step.name}.json", folder / f"{step.name}.log"
    started = time.perf_counter()
    with log.open("w") as sink:
        try:
            code = subprocess.run([sys.executable, str(script), *args, "--json", str(out)], stdout=sink,
                                  stderr=subprocess.STDOUT, timeout=timeout, cwd=HERE.parent).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    click.echo(f"{step.name:13s} {time.perf_counter() - started:6.0f} s  exit {code}  log {log}", err=True)
    if code != 0 or not out.exists():
        tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
        return f"failed ({code}): {tail[0][:100] if tail else ''}"
    return json.loads(out.read_text())


def table(results: dict[str, dict[str, Any] | str]) -> list[str]:
    lines = ["| benchmark | figure | goal | met? |", "|---|---|---|---|"]
    for row in ROWS:
        data = results.get(row.step)
        if data is None or data in ("not present", "not run"):
            continue
        if isinstance(data, str):
            lines.append(f"| {row.what} | {data} | {row.goal} | — |")
            continue
        try:
            figure, met = row.read(data)
        except (KeyError, TypeError, ZeroDivisionError) as exc:
            figure, met = f"no figure ({type(exc).__name__}: {exc})", None
        verdict = "—" if met is None else ("MET" if met else "MISSED")
        lines.append(f"| {row.what} | {figure} | {row.goal} | {verdict} |")
    return lines


@click.command()
@click.option("--quick", is_flag=True, help="Fewer trials and inputs: about 10 minutes here.")
@click.option("--only", default="", help="Comma-separated step names (default: all): "
              + ",".join(s.name for s in STEPS))
@click.option("--keep", "keep_dir", default=None, help="Write each step's JSON and log here (default: a temp dir).")
@click.option("--step-timeout", default=900.0, show_default=True, help="Seconds before a step is stopped.")
@click.option("--table-only", is_flag=True, help="Run nothing: print the table from the JSON files in --keep.")
def main(quick: bool, only: str, keep_dir: str | None, step_timeout: float, table_only: bool) -> None:
    """Run the benchmarks one after another and print one table of ratios against raw Ray / Serve / uvicorn."""
    chosen = {name for name in only.split(",") if name}
    folder = Path(keep_dir or tempfile.mkdtemp(prefix="beamray-bench-all-"))
    folder.mkdir(parents=True, exist_ok=True)
    machine = common.machine_info()
    started = time.perf_counter()
    results: dict[str, dict[str, Any] | str] = {}
    for step in STEPS:
        if (chosen and step.name not in chosen) or (quick and not step.quick and not step.optional):
            continue
        saved = folder / f"{step.name}.json"
        if table_only:
            results[step.name] = json.loads(saved.read_text()) if saved.exists() else "not run"
        else:
            results[step.name] = run_step(step, quick, folder, step_timeout)
    machine["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    click.echo("\n".join(table(results)))
    click.echo(f"\nmachine: {machine['cores']} cores ({machine['cpu_model']}), {machine['ram_gib']} GiB RAM, "
               f"python {machine['python']}, ray {machine['ray']}; load {machine['loadavg_1m']} → "
               f"{machine['loadavg_1m_end']} (1 min); {machine['date']}; "
               f"`python benchmarks/run_all.py{' --quick' if quick else ''}` took "
               f"{(time.perf_counter() - started) / 60:.1f} min; JSON and logs in {folder}")


if __name__ == "__main__":
    main()
