"""``Queue.put`` / ``Queue.pop`` ops/s vs a raw Ray sync actor wrapping a deque, one call at a time.

Beam's Queue API is synchronous, so every operation is one actor call waited on (``ray.get`` each). A trial
puts N small values (a dict with an int and 100 bytes), then pops them back; ops/s counts both. Sides,
interleaved per trial, all on one isolated embedded cluster and driven from this process:

- ``raw_ray``        a ``@ray.remote(num_cpus=0)`` sync actor holding a ``collections.deque``;
- ``beamray``        ``beamray`` ``Queue`` (named detached actor, values cloudpickled by the client);
- ``raw_ray_redis``  a raw sync actor doing RPUSH / LPOP on a Redis list (the floor for a durable queue);
- ``beamray_redis``  ``Queue`` with ``BEAMRAY_REDIS_URL`` set (write-through to a local ``redis-server``).

Goal (issue): beamray/raw_ray ops/s >= 0.9. The Redis figures are reported, against both raw sides.

    python benchmarks/bench_queue.py [--ops 1000] [--trials 9] [--no-redis] [--json out.json]
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import deque
from typing import Any

import click

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from beamray.adapters.queue import Queue  # noqa: E402  (imports no Ray)

GOAL = 0.9


class RawDeque:
    def __init__(self) -> None:
        self.items: deque = deque()

    def put(self, value: Any) -> bool:
        self.items.append(value)
        return True

    def pop(self) -> Any:
        return self.items.popleft() if self.items else None


class RawRedisList:
    def __init__(self, url: str) -> None:
        import redis

        self.client, self.key = redis.Redis.from_url(url), "bench:raw"

    def put(self, value: Any) -> bool:
        import pickle

        self.client.rpush(self.key, pickle.dumps(value))
        return True

    def pop(self) -> Any:
        import pickle

        blob = self.client.lpop(self.key)
        return pickle.loads(blob) if blob is not None else None


def _trial(put, pop, ops: int) -> dict[str, float]:
    """N sequential puts then N sequential pops; seconds for each half."""
    values = [{"i": i, "payload": "x" * 100} for i in range(ops)]
    start = time.perf_counter()
    for value in values:
        put(value)
    middle = time.perf_counter()
    for i in range(ops):
        assert pop()["i"] == i
    end = time.perf_counter()
    assert pop() is None
    return {"put_s": middle - start, "pop_s": end - middle}


@click.command()
@click.option("--ops", default=1000, show_default=True, help="Puts (and then as many pops) per side per trial.")
@click.option("--trials", default=9, show_default=True, help="Timed trials per side.")
@click.option("--warmup", default=300, show_default=True, help="Untimed puts+pops per side first.")
@click.option("--redis/--no-redis", "with_redis", default=True, show_default=True,
              help="Also measure Redis durability (starts a local redis-server).")
@click.option("--json", "json_path", default=None, help="Also write the figures to this JSON file.")
def main(ops: int, trials: int, warmup: int, with_redis: bool, json_path: str | None) -> None:
    """Sequential Queue put/pop throughput of beamray against raw Ray actors."""
    with contextlib.ExitStack() as stack:
        state = stack.enter_context(common.isolated_cluster())
        url = stack.enter_context(common.redis_server()) if with_redis else None
        import ray

        os.environ.pop("BEAMRAY_REDIS_URL", None)
        raw = ray.remote(num_cpus=0, max_concurrency=1)(RawDeque).remote()
        queue = Queue(name="bench-memory", max_size=0)
        sides: dict[str, tuple[Any, Any]] = {
            "raw_ray": (lambda v: ray.get(raw.put.remote(v)), lambda: ray.get(raw.pop.remote())),
            "beamray": (queue.put, queue.pop),
        }
        queue.empty()  # creates the actor (memory backend)
        if url:
            raw_redis = ray.remote(num_cpus=0, max_concurrency=1)(RawRedisList).remote(url)
            os.environ["BEAMRAY_REDIS_URL"] = url
            durable = Queue(name="bench-redis", max_size=0)
            durable.empty()  # creates the actor with the Redis backend
            os.environ.pop("BEAMRAY_REDIS_URL")
            sides["raw_ray_redis"] = (lambda v: ray.get(raw_redis.put.remote(v)),
                                      lambda: ray.get(raw_redis.pop.remote()))
            sides["beamray_redis"] = (durable.put, durable.pop)

        machine = common.machine_info()
        common.print_machine(machine)
        common.header(f"Queue put/pop, {ops} sequential puts then {ops} pops per trial", trials,
                      f"cluster CPUs {state['cpus']:g}, actors num_cpus=0 max_concurrency=1")
        cases = {name: (lambda put=put, pop=pop, n=ops: _trial(put, pop, n)) for name, (put, pop) in sides.items()}
        common.warm_up({name: (lambda put=put, pop=pop: _trial(put, pop, warmup))
                        for name, (put, pop) in sides.items()}, rounds=1)
        samples = common.interleaved(cases, trials)

        summary: dict[str, Any] = {}
        for name, per_trial in samples.items():
            total = [2 * ops / (t["put_s"] + t["pop_s"]) for t in per_trial]
            puts = [ops / t["put_s"] for t in per_trial]
            pops = [ops / t["pop_s"] for t in per_trial]
            summary[name] = {"ops_per_s": common.median(total), "put_ops_per_s": common.median(puts),
                             "pop_ops_per_s": common.median(pops), "ops_per_s_trials": total,
                             "put_ops_per_s_trials": puts, "pop_ops_per_s_trials": pops}
            click.echo(f"{name:14s} {summary[name]['ops_per_s']:7.0f} ops/s (put {summary[name]['put_ops_per_s']:.0f}, "
                       f"pop {summary[name]['pop_ops_per_s']:.0f})  mean±std {common.fmt_mean_std(total, digits=0)}  "
                       f"= {1e3 / summary[name]['ops_per_s']:.3f} ms/op")

        def ratio(a: str, b: str, figure: str = "ops_per_s") -> float:
            """Ratio of the medians over trials (the headline, as in the other benchmarks)."""
            return summary[a][figure] / summary[b][figure]

        def paired(a: str, b: str) -> float:
            return common.paired_ratio(summary[a]["ops_per_s_trials"], summary[b]["ops_per_s_trials"])

        ratios = {"beamray/raw_ray": ratio("beamray", "raw_ray"),
                  "beamray/raw_ray paired": paired("beamray", "raw_ray"),
                  "beamray/raw_ray put": ratio("beamray", "raw_ray", "put_ops_per_s"),
                  "beamray/raw_ray pop": ratio("beamray", "raw_ray", "pop_ops_per_s")}
        click.echo(common.ratio_line("beamray/raw_ray ops/s", ratios["beamray/raw_ray"], f">= {GOAL}",
                                     ratios["beamray/raw_ray"] >= GOAL))
        click.echo(f"  per-trial ratio, median: {ratios['beamray/raw_ray paired']:.2f}x; "
                   f"put alone {ratios['beamray/raw_ray put']:.2f}x, pop alone {ratios['beamray/raw_ray pop']:.2f}x")
        if url:
            for a, b in (("beamray_redis", "raw_ray"), ("beamray_redis", "raw_ray_redis")):
                ratios[f"{a}/{b}"], ratios[f"{a}/{b} paired"] = ratio(a, b), paired(a, b)
                click.echo(f"{a}/{b} ops/s = {ratios[f'{a}/{b}']:.2f}x "
                           f"(per-trial ratio, median: {ratios[f'{a}/{b} paired']:.2f}x)")
        machine["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
        common.write_json(json_path, {
            "benchmark": "queue", "ops": ops, "trials": trials, "machine": machine, "cluster_cpus": state["cpus"],
            "summary": summary, "ratios": ratios, "goal": GOAL, "met": ratios["beamray/raw_ray"] >= GOAL,
        })


if __name__ == "__main__":
    main()
