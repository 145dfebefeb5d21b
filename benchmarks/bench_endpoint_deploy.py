"""Deploy-to-first-200 and cold start from zero replicas: beamray ``deploy.deploy`` vs raw ``serve.run``.

Both on one isolated embedded cluster with Serve (and beamray's gateway) already running, each trial under
a new name, the two sides interleaved (A/B, B/A, ...):

- deploy: beamray ``deploy.deploy(spec, code_root=<a one-file project>)`` of a trivial ``@endpoint``
  until its versioned URL answers 200, against ``serve.run`` of a FastAPI deployment doing the same
  (``num_cpus=0``, beamray's logging config) until its route answers 200. The URL is polled every 5 ms
  once the call returns. Between trials both apps are deleted (untimed). beamray's time is split into
  its phases by wrapping (in this process only) ``ensure_serve``, ``code.package``, ``code.publish``,
  ``serve.run`` and ``Registry.save``.
- cold start: an endpoint with ``QueueDepthAutoscaler(min_containers=0, max_containers=1)`` and
  ``keep_warm_seconds=2``, and a raw deployment with the very ``autoscaling_config`` beamray derives from
  it (``serve_bridge.options.deployment_options``). Each trial waits until the app has 0 replicas, then
  times one POST (held by Serve until a replica is up) to its 200.

Goal (issue): beamray/raw deploy-to-first-200 <= 1.2.

    python benchmarks/bench_endpoint_deploy.py [--trials 5] [--cold-trials 4] [--json out.json]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable

import click

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from beamray import QueueDepthAutoscaler, endpoint  # noqa: E402  (imports no Ray)

GOAL = 1.2
QUIET_LOGS = {"enable_access_log": False, "log_level": "WARNING"}  # what beamray sets on its deployments


@endpoint(name="benchdeploy", cpu=0.1)
def double(x: float = 0):
    return {"result": x * 2}


@endpoint(name="benchcold", cpu=0.1, keep_warm_seconds=2,
          autoscaler=QueueDepthAutoscaler(min_containers=0, max_containers=1))
def cold_double(x: float = 0):
    return {"result": x * 2}


def raw_deployment(**options: Any) -> Any:
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0}, logging_config=QUIET_LOGS, **options)
    @serve.ingress(common.double_app())
    class RawDouble:
        pass

    return RawDouble


class Phases:
    """Wall time spent in wrapped functions, added up into ``current`` while it is set."""

    def __init__(self) -> None:
        self.current: dict[str, float] | None = None

    def wrap(self, owner: Any, attribute: str, label: str) -> None:
        original: Callable[..., Any] = getattr(owner, attribute)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                if self.current is not None:
                    self.current[label] = self.current.get(label, 0.0) + time.perf_counter() - start

        setattr(owner, attribute, wrapper)


def replica_count(app_name: str) -> int:
    from ray import serve

    application = serve.status().applications.get(app_name)
    if application is None:
        return 0
    return sum(sum(d.replica_states.values()) for d in application.deployments.values())


def wait_for_zero(app_name: str, timeout: float = 120.0) -> float:
    """Seconds until ``app_name`` has no replica (in any state)."""
    start = time.monotonic()
    while replica_count(app_name) > 0:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{app_name} still has replicas after {timeout:g}s")
        time.sleep(0.2)
    return time.monotonic() - start


def first_request(url: str, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    status, body = common.http_post(url, headers=headers, timeout=180)
    elapsed = time.perf_counter() - start
    if status != 200:
        raise click.ClickException(f"cold request to {url} answered {status} {body[:300]!r}")
    return elapsed


def _stats(values: list[float]) -> dict[str, Any]:
    return {"median_s": common.median(values), "min_s": min(values), "max_s": max(values),
            "trials_s": [round(v, 3) for v in values]}


@click.command()
@click.option("--trials", default=5, show_default=True, help="Deploy trials per side (a new name each).")
@click.option("--cold-trials", default=4, show_default=True, help="Cold starts from 0 replicas per side.")
@click.option("--json", "json_path", default=None, help="Also write the figures to this JSON file.")
def main(trials: int, cold_trials: int, json_path: str | None) -> None:
    """Deploy-to-first-200 and scale-from-zero first request: beamray vs raw Ray Serve."""
    code_root = tempfile.mkdtemp(prefix="beamray-bench-code-")  # a small project: just this script
    shutil.copy(__file__, code_root)
    try:
        with common.isolated_cluster() as state:
            from ray import serve

            from beamray import cluster, registry, secrets
            from beamray import code, deploy
            from beamray.serve_bridge.options import deployment_options

            machine = common.machine_info()
            common.print_machine(machine)
            started = time.perf_counter()
            deploy.ensure_serve()
            click.echo(f"Serve + gateway up in {time.perf_counter() - started:.1f}s")
            base = cluster.gateway_url()
            auth = {"Authorization": f"Bearer {secrets.gateway_token()}"}

            phases = Phases()
            phases.wrap(deploy, "ensure_serve", "ensure_serve")
            phases.wrap(code, "package", "code.package")
            phases.wrap(code, "publish", "code.publish")
            phases.wrap(serve, "run", "serve.run")
            phases.wrap(registry.Registry, "save", "Registry.save")

            # ---- deploy to first 200
            counter = {"beamray": 0, "raw": 0}

            def beamray_deploy() -> dict[str, float]:
                counter["beamray"] += 1
                name = f"benchdeploy{counter['beamray']}"
                phases.current = {}
                start = time.perf_counter()
                record = deploy.deploy(double.parent.spec_for(double.func, name), code_root=code_root)
                returned = time.perf_counter()
                attempts = common.wait_for_200(record.url, auth)
                result = {"total_s": time.perf_counter() - start, "deploy_call_s": returned - start,
                          "until_200_s": time.perf_counter() - returned, "attempts": attempts, **phases.current}
                phases.current = None
                deploy.delete(name)
                time.sleep(1)  # let the stopped replica go before the next side's trial
                return result

            def raw_deploy() -> dict[str, float]:
                counter["raw"] += 1
                name = f"rawdeploy{counter['raw']}"
                phases.current = {}
                start = time.perf_counter()
                serve.run(raw_deployment().options(name=name).bind(), name=name, route_prefix=f"/{name}")
                returned = time.perf_counter()
                attempts = common.wait_for_200(f"{base}/{name}/")
                result = {"total_s": time.perf_counter() - start, "deploy_call_s": returned - start,
                          "until_200_s": time.perf_counter() - returned, "attempts": attempts, **phases.current}
                phases.current = None
                serve.delete(name)
                time.sleep(1)
                return result

            common.header("deploy until the first HTTP 200", trials,
                          f"cluster CPUs {state['cpus']:g}; one warm-up deploy per side first")
            common.warm_up({"raw": raw_deploy, "beamray": beamray_deploy}, rounds=1)
            deploys = common.interleaved({"raw": raw_deploy, "beamray": beamray_deploy}, trials)
            deploy_summary: dict[str, Any] = {}
            for side, results in deploys.items():
                keys = sorted({k for r in results for k in r if k != "attempts"})
                deploy_summary[side] = {k: common.median([r.get(k, 0.0) for r in results]) for k in keys}
                deploy_summary[side]["total_trials_s"] = [round(r["total_s"], 3) for r in results]
                parts = ", ".join(f"{k} {v:.3f}" for k, v in deploy_summary[side].items()
                                  if k not in ("total_s", "total_trials_s"))
                click.echo(f"{side:8s} total {deploy_summary[side]['total_s']:.2f} s "
                           f"(trials {deploy_summary[side]['total_trials_s']}); medians: {parts}")
            deploy_ratio = common.paired_ratio([r["total_s"] for r in deploys["beamray"]],
                                               [r["total_s"] for r in deploys["raw"]])
            click.echo(common.ratio_line("beamray/raw deploy-to-first-200 (per-trial ratios, median)",
                                         deploy_ratio, f"<= {GOAL}", deploy_ratio <= GOAL))

            # ---- cold start from zero replicas
            cold_spec = cold_double.parent.spec_for(cold_double.func)
            autoscaling = deployment_options(cold_spec.serving, {})["autoscaling_config"]
            cold_record = deploy.deploy(cold_spec, code_root=code_root)
            serve.run(raw_deployment(autoscaling_config=autoscaling).options(name="rawcold").bind(),
                      name="rawcold", route_prefix="/rawcold")
            targets = {"raw": ("rawcold", f"{base}/rawcold/", {}),
                       "beamray": (cold_record.app_name, cold_record.url, auth)}
            for _, url, headers in targets.values():
                common.wait_for_200(url, headers)

            def cold_case(side: str) -> Callable[[], dict[str, float]]:
                app_name, url, headers = targets[side]

                def run() -> dict[str, float]:
                    to_zero = wait_for_zero(app_name)
                    return {"first_request_s": first_request(url, headers), "to_zero_s": to_zero}

                return run

            common.header("cold start: first request to an app scaled to 0 replicas", cold_trials,
                          f"autoscaling_config {autoscaling}")
            colds = common.interleaved({"raw": cold_case("raw"), "beamray": cold_case("beamray")}, cold_trials)
            cold_summary = {}
            for side, results in colds.items():
                cold_summary[side] = {"first_request": _stats([r["first_request_s"] for r in results]),
                                      "wait_to_zero": _stats([r["to_zero_s"] for r in results])}
                click.echo(f"{side:8s} first request {cold_summary[side]['first_request']['median_s']:.2f} s "
                           f"(trials {cold_summary[side]['first_request']['trials_s']}); "
                           f"idle→0 replicas waited {cold_summary[side]['wait_to_zero']['median_s']:.1f} s")
            cold_ratio = common.paired_ratio([r["first_request_s"] for r in colds["beamray"]],
                                             [r["first_request_s"] for r in colds["raw"]])
            click.echo(f"beamray/raw cold first request (per-trial ratios, median) = {cold_ratio:.2f}x")

            machine["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
            common.write_json(json_path, {
                "benchmark": "endpoint_deploy", "trials": trials, "cold_trials": cold_trials, "machine": machine,
                "cluster_cpus": state["cpus"], "deploy": deploy_summary, "deploy_trials": deploys,
                "deploy_ratio": deploy_ratio, "goal": GOAL, "met": deploy_ratio <= GOAL,
                "cold": cold_summary, "cold_trials_raw": colds, "cold_ratio": cold_ratio,
                "autoscaling_config": autoscaling,
            })
    finally:
        shutil.rmtree(code_root, ignore_errors=True)


if __name__ == "__main__":
    main()
