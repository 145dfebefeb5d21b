"""``@function(cpu=1).remote()`` round trip vs raw Ray ``ray.get(f.remote(x))``, one call at a time.

Both sides ask Ray for the same resources (1 CPU, 128 MiB). Each trial times N sequential calls per side
(time.perf_counter around each call); the figures are the medians over trials of each trial's p50 and p99.
Goal (issue): beamray/raw_ray p50 latency <= 1.2.

    python benchmarks/bench_function_remote.py [--calls 1000] [--trials 5] [--json out.json]
    python benchmarks/bench_function_remote.py --profile 1000   # also cProfile 1000 calls of each side
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time

import click

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from beamray import function  # noqa: E402  (imports no Ray)

GOAL = 1.2


@function(cpu=1)
def identity(x):
    return x


def _identity(x):
    return x


def _latencies(call, calls: int) -> list[float]:
    out = []
    for i in range(calls):
        start = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - start)
    return out


def _profile(label: str, call, calls: int, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(calls):
        call(i)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    click.echo(f"\n-- cProfile, {calls} calls, {label} (cumulative) --")
    click.echo("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:6000])


def _per_call_us(func, n: int = 5000) -> float:
    """Median over 5 repeats of the mean cost of one ``func()`` call, in microseconds."""
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            func()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return common.median(runs)


def _components() -> dict[str, float]:
    """Per-call cost of the pieces of beamray's .remote() path, each timed on its own (no profiler)."""
    import ray

    from beamray.runtime import functions, resources

    runner = identity.runner
    remote = runner._remote_function()
    options = runner._task_options()
    driver = {
        "FunctionRunner._remote_function() (incl. connect)": _per_call_us(runner._remote_function),
        "FunctionRunner._task_options() (check_feasible)": _per_call_us(runner._task_options),
        "resources.check_feasible()": _per_call_us(lambda: resources.check_feasible(options, "x")),
        "ray RemoteFunction.options(**options)": _per_call_us(lambda: remote.options(**options)),
    }
    body = functions._make_task_body(runner.spec)

    @ray.remote(num_cpus=1)
    def in_worker(n: int) -> dict[str, float]:
        return {"task wrapper beamray_function(x) (in a worker)": _per_call_us(lambda: body(1), n),
                "bare handler identity(x) (in a worker)": _per_call_us(lambda: identity.func(1), n)}

    worker = ray.get(in_worker.remote(2000))
    return {**driver, **worker}


@click.command()
@click.option("--calls", default=1000, show_default=True, help="Sequential calls per side per trial.")
@click.option("--trials", default=7, show_default=True, help="Timed trials per side.")
@click.option("--warmup", default=200, show_default=True, help="Untimed calls per side first.")
@click.option("--profile", "profile_calls", default=0, show_default=True,
              help="After timing, cProfile this many calls of each side and print the top functions.")
@click.option("--json", "json_path", default=None, help="Also write the figures to this JSON file.")
def main(calls: int, trials: int, warmup: int, profile_calls: int, json_path: str | None) -> None:
    """Round-trip latency of beamray's .remote() against raw Ray."""
    with common.isolated_cluster() as state:
        import ray

        raw = ray.remote(**common.RAW_TASK_OPTIONS)(_identity)

        def raw_call(i: int) -> None:
            assert ray.get(raw.remote(i)) == i

        def beamray_call(i: int) -> None:
            assert identity.remote(i) == i

        machine = common.machine_info()
        common.print_machine(machine)
        common.header(f".remote() round trip, {calls} sequential calls per trial", trials,
                      f"cluster CPUs {state['cpus']:g}, both sides num_cpus=1 memory=128MiB")
        common.warm_up({"raw_ray": lambda: _latencies(raw_call, warmup),
                        "beamray": lambda: _latencies(beamray_call, warmup)}, rounds=1)
        samples = common.interleaved({"raw_ray": lambda: _latencies(raw_call, calls),
                                      "beamray": lambda: _latencies(beamray_call, calls)}, trials)

        summary = {}
        for name, per_trial in samples.items():
            p50s = [common.percentile(t, 50) * 1e3 for t in per_trial]
            p99s = [common.percentile(t, 99) * 1e3 for t in per_trial]
            summary[name] = {"p50_ms": common.median(p50s), "p99_ms": common.median(p99s),
                             "p50_ms_trials": p50s, "p99_ms_trials": p99s,
                             "calls_per_s": common.median([len(t) / sum(t) for t in per_trial])}
            click.echo(f"{name:8s} p50 {summary[name]['p50_ms']:.3f} ms (trials {[round(v, 3) for v in p50s]})  "
                       f"p99 {summary[name]['p99_ms']:.3f} ms  "
                       f"mean±std of p50 {common.fmt_mean_std(p50s, digits=3)} ms  "
                       f"{summary[name]['calls_per_s']:.0f} calls/s")
        p50_ratio = summary["beamray"]["p50_ms"] / summary["raw_ray"]["p50_ms"]
        p99_ratio = summary["beamray"]["p99_ms"] / summary["raw_ray"]["p99_ms"]
        paired = common.paired_ratio(summary["beamray"]["p50_ms_trials"], summary["raw_ray"]["p50_ms_trials"])
        click.echo(f"per-trial p50 ratio, median: {paired:.2f}x")
        click.echo(f"beamray - raw_ray p50 = {summary['beamray']['p50_ms'] - summary['raw_ray']['p50_ms']:+.3f} ms per call")
        click.echo(common.ratio_line("beamray/raw_ray p50 latency", p50_ratio, f"<= {GOAL}", p50_ratio <= GOAL))
        click.echo(f"beamray/raw_ray p99 latency = {p99_ratio:.2f}x")
        machine["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
        common.write_json(json_path, {
            "benchmark": "function_remote", "calls": calls, "trials": trials, "machine": machine,
            "cluster_cpus": state["cpus"], "summary": summary, "p50_ratio": p50_ratio, "p99_ratio": p99_ratio,
            "paired_p50_ratio": paired,
            "goal": GOAL, "met": p50_ratio <= GOAL,
        })
        if profile_calls:
            click.echo("\n-- per-call cost of beamray's pieces (us, no profiler) --")
            parts = _components()
            for part, cost in parts.items():
                click.echo(f"{cost:9.1f} us  {part}")
            _profile("raw ray.get(f.remote())", raw_call, profile_calls, 25)
            _profile("beamray .remote()", beamray_call, profile_calls, 40)


if __name__ == "__main__":
    main()
