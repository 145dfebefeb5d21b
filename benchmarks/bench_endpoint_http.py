"""A trivial JSON ``@endpoint`` over HTTP: beamray vs raw Ray Serve vs bare uvicorn, in one process run.

Targets, all on one isolated embedded cluster (the handler returns ``{"result": x * 2}`` everywhere):

- ``beamray``        ``@endpoint`` deployed with ``deploy.deploy``, its versioned URL + bearer token;
- ``beamray_alias``  the same deployment at ``/endpoint/NAME`` (through the gateway app at ``/``);
- ``serve_default``  a raw Serve FastAPI deployment, Serve's defaults (``max_ongoing_requests=5``), ``/raw``;
- ``serve_tuned``    the same with ``max_ongoing_requests=64``, ``/rawt``;
- ``uvicorn``        the same FastAPI app under bare uvicorn in a subprocess (the ceiling).

Raw deployments use ``ray_actor_options={"num_cpus": 0}``; the beamray endpoint asks ``cpu=0.1`` (neither
is enforced, both fit a 2-CPU node). Raw deployments get beamray's logging config (no access log, WARNING),
so that logging is not part of the difference; otherwise they keep Serve's defaults.

Each trial measures every target, the order reversed every other trial: sequential latency (one
keep-alive ``http.client`` connection, ``--requests`` POSTs after ``--warmup``), then ``wrk`` throughput
at each ``--clients`` count (``-t1``, a Lua script for POST JSON and the Authorization header; 1 s untimed
at that count first). Figures are medians over trials; ratios are medians of per-trial ratios.

``--ingress haproxy`` runs the same on a cluster started with ``BEAMRAY_SERVE_INGRESS=haproxy`` (Ray 2.60's
HAProxy ingress, ``RAY_SERVE_ENABLE_HA_PROXY=1``, its files and ports moved off the shared defaults). Both modes also check a
``@realtime`` WebSocket echo and list what the cluster's processes listen on.

    python benchmarks/bench_endpoint_http.py [--trials 3] [--duration 5] [--json out.json]
    python benchmarks/bench_endpoint_http.py --ingress haproxy --json haproxy.json
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)

import common  # noqa: E402
from beamray import endpoint, realtime  # noqa: E402  (imports no Ray)

SEQ_GOAL = 1.15  # beamray seq p50 / raw Serve (defaults) seq p50
RPS_GOAL = 1.0  # beamray rps / raw Serve tuned rps at 16 and 32 clients
MOONSHOT = 0.25  # beamray rps / bare uvicorn rps at 16 clients
BODY = b'{"x": 21}'
# What beamray sets on its deployments (serve_bridge.options): raw Serve gets it too, so that neither side
# pays for an access log shipped to the driver.
QUIET_LOGS = {"enable_access_log": False, "log_level": "WARNING"}


@endpoint(name="benchdouble", cpu=0.1)
def double(x: float = 0):
    return {"result": x * 2}


@realtime(name="benchecho", cpu=0.1)
def echo(event):
    return {"response": event}


# ------------------------------------------------------------------------------------------ set-up

def raw_deployment(max_ongoing_requests: int | None) -> Any:
    from ray import serve

    options: dict[str, Any] = {"ray_actor_options": {"num_cpus": 0}, "logging_config": QUIET_LOGS}
    if max_ongoing_requests is not None:
        options["max_ongoing_requests"] = max_ongoing_requests

    @serve.deployment(**options)
    @serve.ingress(common.double_app())
    class RawDouble:
        pass

    return RawDouble


def start_uvicorn(port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "uvicorn", "--factory", "common:double_app", "--app-dir", BENCH_DIR,
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


def deploy_targets(http_base: str, token: str, uvicorn_port: int) -> dict[str, dict[str, Any]]:
    """Deploy every target; returns name → {url, headers, deploy_s}."""
    from ray import serve

    from beamray import deploy

    auth = {"Authorization": f"Bearer {token}"}
    code_root = tempfile.mkdtemp(prefix="beamray-bench-code-")  # a small project: just this script
    shutil.copy(__file__, code_root)
    targets: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    record = deploy.deploy(double.parent.spec_for(double.func), code_root=code_root)
    targets["beamray"] = {"url": record.url, "headers": auth, "deploy_s": time.perf_counter() - started}
    targets["beamray_alias"] = {"url": f"{http_base}/endpoint/{record.name}", "headers": auth}
    for name, prefix, max_ongoing in (("serve_default", "/raw", None), ("serve_tuned", "/rawt", 64)):
        started = time.perf_counter()
        serve.run(raw_deployment(max_ongoing).options(name=name).bind(), name=name, route_prefix=prefix)
        targets[name] = {"url": f"{http_base}{prefix}/", "headers": {}, "deploy_s": time.perf_counter() - started}
    targets["uvicorn"] = {"url": f"http://127.0.0.1:{uvicorn_port}/", "headers": {}}
    for name, target in targets.items():
        common.wait_for_200(target["url"], target["headers"], timeout=60)
        status, body = common.http_post(target["url"], headers=target["headers"])
        if status != 200 or json.loads(body) != {"result": 42}:
            raise click.ClickException(f"{name} at {target['url']} answered {status} {body[:200]!r}")
    return targets


# ----------------------------------------------------------------------------------------- clients

def sequential(url: str, headers: dict[str, str], requests: int, warmup: int) -> dict[str, Any]:
    """Latency of ``requests`` POSTs, one after another, on one keep-alive connection."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    all_headers = {"Content-Type": "application/json", **headers}
    latencies: list[float] = []
    errors = 0
    try:
        for i in range(warmup + requests):
            start = time.perf_counter()
            connection.request("POST", parts.path, BODY, all_headers)
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - start
            errors += response.status != 200
            if i >= warmup:
                latencies.append(elapsed)
    finally:
        connection.close()
    return {"p50_ms": common.percentile(latencies, 50) * 1e3, "p99_ms": common.percentile(latencies, 99) * 1e3,
            "errors": errors}


_WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
{auth}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKJSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"non2xx\\": %d, "
    .. "\\"socket_errors\\": %d, \\"timeouts\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d}}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _wrk_script(headers: dict[str, str], directory: str) -> str:
    auth = "\n".join(f'wrk.headers["{key}"] = "{value}"' for key, value in headers.items())
    fd, path = tempfile.mkstemp(suffix=".lua", dir=directory)
    with os.fdopen(fd, "w") as handle:
        handle.write(_WRK_SCRIPT.format(body=BODY.decode(), auth=auth))
    return path


def wrk(url: str, script: str, clients: int, duration: float) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{clients}", f"-d{duration:g}s", "--timeout", "10s", "-s", script, url]
    output = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60).stdout
    match = re.search(r"^WRKJSON (.*)$", output, re.MULTILINE)
    if not match:
        raise click.ClickException(f"wrk printed no summary:\n{output}")
    result = json.loads(match.group(1))
    ok = result["requests"] - result["non2xx"]
    result["rps"] = ok / (result["duration_us"] / 1e6)
    result["p50_ms"], result["p99_ms"] = result.pop("p50_us") / 1e3, result.pop("p99_us") / 1e3
    return result


def threaded_load(url: str, headers: dict[str, str], clients: int, duration: float) -> dict[str, Any]:
    """Fallback load generator when wrk is missing: ``clients`` threads, one keep-alive connection each."""
    parts = urlsplit(url)
    all_headers = {"Content-Type": "application/json", **headers}
    stop = time.perf_counter() + duration
    latencies: list[list[float]] = [[] for _ in range(clients)]
    non2xx = [0] * clients

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        while time.perf_counter() < stop:
            start = time.perf_counter()
            connection.request("POST", parts.path, BODY, all_headers)
            response = connection.getresponse()
            response.read()
            latencies[index].append(time.perf_counter() - start)
            non2xx[index] += response.status != 200
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    flat = [v for per in latencies for v in per]
    return {"requests": len(flat), "non2xx": sum(non2xx), "socket_errors": 0, "timeouts": 0,
            "rps": (len(flat) - sum(non2xx)) / elapsed, "p50_ms": common.percentile(flat, 50) * 1e3,
            "p99_ms": common.percentile(flat, 99) * 1e3}


# ------------------------------------------------------------------------------------ side checks

def websocket_check(url: str, headers: dict[str, str], messages: int = 300) -> dict[str, Any]:
    """A ``@realtime`` echo over a real WebSocket: connect time and per-message round trip."""
    from websockets.sync.client import connect

    try:
        start = time.perf_counter()
        with connect(url, additional_headers=headers, open_timeout=30) as socket:
            connect_ms = (time.perf_counter() - start) * 1e3
            latencies = []
            for i in range(messages):
                start = time.perf_counter()
                socket.send(f"m{i}")
                reply = json.loads(socket.recv(timeout=30))
                latencies.append(time.perf_counter() - start)
                if reply != {"response": f"m{i}"}:
                    return {"works": False, "error": f"unexpected reply {reply!r}"}
    except Exception as exc:  # report, do not abort the benchmark
        return {"works": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"works": True, "connect_ms": connect_ms, "p50_ms": common.percentile(latencies, 50) * 1e3,
            "p99_ms": common.percentile(latencies, 99) * 1e3}


def listening_sockets(head_pid: int) -> list[dict[str, Any]]:
    """TCP listeners of the processes in the embedded head's session (it starts a new session)."""
    session = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == head_pid:
                session.add(int(entry.name))
    try:
        output = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in output.splitlines():
        columns = line.split()
        users = re.findall(r'\("([^"]+)",pid=(\d+)', line)
        mine = [(name, int(pid)) for name, pid in users if int(pid) in session]
        if not mine or len(columns) < 4:
            continue
        address = columns[3]
        host = address.rsplit(":", 1)[0].strip("[]")
        host = host.removeprefix("::ffff:")
        found.append({"address": address, "process": mine[0][0],
                      "loopback": host.startswith("127.") or host == "::1"})
    return sorted(found, key=lambda s: (s["loopback"], s["process"], s["address"]))


def haproxy_routing(files: str | None) -> list[str]:
    """The binds, path ACLs and servers of the HAProxy config Serve generated (Ray adds a node-id folder)."""
    if not files:
        return []
    wanted = re.compile(r"^\s*(bind |acl is_|use_backend |server |backend )")
    lines: list[str] = []
    for config_file in sorted(Path(files).glob("*/haproxy.cfg")) + sorted(Path(files).glob("haproxy.cfg")):
        lines += [line.strip() for line in config_file.read_text().splitlines() if wanted.match(line)]
    return lines


# ------------------------------------------------------------------------------------------- main

def _measure(target: dict[str, Any], clients: list[int], duration: float, requests: int, warmup: int,
             use_wrk: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"seq": sequential(target["url"], target["headers"], requests, warmup), "load": {},
                              "loadavg_1m": os.getloadavg()[0]}
    for count in clients:
        if use_wrk:
            wrk(target["url"], target["script"], count, 1)
            result["load"][count] = wrk(target["url"], target["script"], count, duration)
        else:
            threaded_load(target["url"], target["headers"], count, 1)
            result["load"][count] = threaded_load(target["url"], target["headers"], count, duration)
    return result


def _summarize(per_trial: list[dict[str, Any]], clients: list[int]) -> dict[str, Any]:
    seq_p50 = [t["seq"]["p50_ms"] for t in per_trial]
    seq_p99 = [t["seq"]["p99_ms"] for t in per_trial]
    summary: dict[str, Any] = {"seq_p50_ms": common.median(seq_p50), "seq_p99_ms": common.median(seq_p99),
                               "seq_p50_ms_trials": seq_p50, "seq_errors": sum(t["seq"]["errors"] for t in per_trial),
                               "loadavg_1m_trials": [round(t["loadavg_1m"], 1) for t in per_trial],
                               "rps": {}, "rps_trials": {}, "load_p50_ms": {}, "load_p99_ms": {}, "load_errors": {}}
    for count in clients:
        loads = [t["load"][count] for t in per_trial]
        summary["rps_trials"][count] = [load["rps"] for load in loads]
        summary["rps"][count] = common.median(summary["rps_trials"][count])
        summary["load_p50_ms"][count] = common.median([load["p50_ms"] for load in loads])
        summary["load_p99_ms"][count] = common.median([load["p99_ms"] for load in loads])
        summary["load_errors"][count] = sum(load["non2xx"] + load["socket_errors"] + load["timeouts"]
                                            for load in loads)
    return summary


def _print_table(summary: dict[str, dict[str, Any]], clients: list[int]) -> None:
    head = f"{'target':14s} {'seq p50':>8s} {'seq p99':>8s} " + " ".join(f"{f'rps@{c}':>9s}" for c in clients)
    click.echo(head + "   p50/p99 ms at the highest count, errors")
    for name, s in summary.items():
        top = clients[-1]
        errors = s["seq_errors"] + sum(s["load_errors"].values())
        click.echo(f"{name:14s} {s['seq_p50_ms']:8.2f} {s['seq_p99_ms']:8.2f} "
                   + " ".join(f"{s['rps'][c]:9.0f}" for c in clients)
                   + f"   {s['load_p50_ms'][top]:.1f}/{s['load_p99_ms'][top]:.1f}, {errors}")


def _ratios(summary: dict[str, dict[str, Any]], clients: list[int]) -> dict[str, Any]:
    beam, raw, tuned, bare = (summary[n] for n in ("beamray", "serve_default", "serve_tuned", "uvicorn"))
    ratios: dict[str, Any] = {}
    seq = common.paired_ratio(beam["seq_p50_ms_trials"], raw["seq_p50_ms_trials"])
    ratios["seq_p50_vs_serve_default"] = seq
    click.echo(common.ratio_line("beamray/serve_default seq p50 (per-trial ratios, median)", seq,
                                 f"<= {SEQ_GOAL}", seq <= SEQ_GOAL))
    click.echo(f"beamray - serve_default seq p50 = {beam['seq_p50_ms'] - raw['seq_p50_ms']:+.2f} ms; "
               f"alias hop adds {summary['beamray_alias']['seq_p50_ms'] - beam['seq_p50_ms']:+.2f} ms")
    for count in (c for c in (16, 32) if c in clients):
        ratio = common.paired_ratio(beam["rps_trials"][count], tuned["rps_trials"][count])
        ratios[f"rps{count}_vs_serve_tuned"] = ratio
        click.echo(common.ratio_line(f"beamray/serve_tuned rps at {count} clients", ratio, f">= {RPS_GOAL}",
                                     ratio >= RPS_GOAL))
    rps = [beam["rps"][c] for c in clients]
    never_falls = all(b >= a * 0.95 for a, b in zip(rps, rps[1:]))
    ratios["beamray_rps_never_falls"] = never_falls
    click.echo(f"beamray rps by clients {clients}: {[round(v) for v in rps]} -> "
               f"{'never falls' if never_falls else 'FALLS'} (5% noise allowance)")
    if 16 in clients:
        moon = common.paired_ratio(beam["rps_trials"][16], bare["rps_trials"][16])
        ratios["rps16_fraction_of_uvicorn"] = moon
        click.echo(common.ratio_line("beamray/bare uvicorn rps at 16 clients", moon, f">= {MOONSHOT} (moonshot)",
                                     moon >= MOONSHOT))
    return ratios


@click.command()
@click.option("--trials", default=3, show_default=True, help="Interleaved trials per target.")
@click.option("--requests", default=1000, show_default=True, help="Sequential requests per trial.")
@click.option("--warmup", default=100, show_default=True, help="Untimed sequential requests first.")
@click.option("--duration", default=5.0, show_default=True, help="Seconds of wrk load per client count.")
@click.option("--clients", default="1,4,16,32", show_default=True, help="Concurrent clients (comma-separated).")
@click.option("--ingress", type=click.Choice(["proxy", "haproxy"]), default="proxy", show_default=True,
              help="Serve's ingress: its Python proxy, or HAProxy (RAY_SERVE_ENABLE_HA_PROXY=1 on the head).")
@click.option("--json", "json_path", default=None, help="Also write the figures to this JSON file.")
def main(trials: int, requests: int, warmup: int, duration: float, clients: str, ingress: str,
         json_path: str | None) -> None:
    """Latency and throughput of a trivial @endpoint: beamray vs raw Serve vs bare uvicorn."""
    counts = sorted(int(c) for c in clients.split(","))
    use_wrk = shutil.which("wrk") is not None
    generator = "wrk -t1 (Lua POST script)" if use_wrk else "python threads + http.client (wrk not found)"
    os.environ["BEAMRAY_SERVE_INGRESS"] = ingress  # read when the head starts
    uvicorn_port = common.free_port()
    uvicorn = start_uvicorn(uvicorn_port)
    scripts = tempfile.mkdtemp(prefix="beamray-bench-wrk-")
    try:
        with common.isolated_cluster() as state:
            from beamray import cluster, head, secrets
            from beamray import deploy

            machine = common.machine_info()
            common.print_machine(machine)
            started = time.perf_counter()
            deploy.ensure_serve()
            serve_start_s = time.perf_counter() - started
            http_base = cluster.gateway_url()
            targets = deploy_targets(http_base, secrets.gateway_token(), uvicorn_port)
            for target in targets.values():
                target["script"] = _wrk_script(target["headers"], scripts)
            click.echo(f"ingress {ingress}: Serve + gateway up in {serve_start_s:.1f}s; deploy "
                       + ", ".join(f"{n} {t['deploy_s']:.1f}s" for n, t in targets.items() if "deploy_s" in t))
            common.header(f"trivial JSON endpoint over HTTP, ingress={ingress}", trials,
                          f"seq {requests} POSTs on one keep-alive connection; load: {generator}, "
                          f"{duration:g}s per count of {counts} clients; cluster CPUs {state['cpus']:g}")
            cases = {name: (lambda t=t: _measure(t, counts, duration, requests, warmup, use_wrk))
                     for name, t in targets.items()}
            for target in targets.values():  # warm-up: connections, code paths, Serve's router
                sequential(target["url"], target["headers"], 200, 0)
                if use_wrk:
                    wrk(target["url"], target["script"], 4, 1)
            per_trial = common.interleaved(cases, trials)
            summary = {name: _summarize(results, counts) for name, results in per_trial.items()}
            _print_table(summary, counts)
            ratios = _ratios(summary, counts)

            ws_record = deploy.deploy(echo.parent.spec_for(echo.func), code_root=tempfile.mkdtemp())
            ws_url = "ws://" + ws_record.url.split("://", 1)[1]
            websocket = websocket_check(ws_url, {"Authorization": f"Bearer {secrets.gateway_token()}"})
            click.echo(f"@realtime WebSocket echo at {ws_url}: {websocket}")
            listeners = listening_sockets(head.embedded_state()["pid"])
            exposed = [f"{s['process']} {s['address']}" for s in listeners if not s["loopback"]]
            click.echo(f"cluster listeners not on loopback ({len(exposed)} of {len(listeners)}): {exposed}")
            routing = haproxy_routing(head.embedded_state().get("haproxy_files"))
            if routing:
                click.echo("HAProxy config (binds, path ACLs, servers):\n  " + "\n  ".join(routing))
            machine["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
            common.write_json(json_path, {
                "benchmark": "endpoint_http", "ingress": ingress, "trials": trials, "requests": requests,
                "duration_s": duration, "clients": counts, "generator": generator, "machine": machine,
                "cluster_cpus": state["cpus"], "serve_start_s": serve_start_s,
                "deploy_s": {n: t.get("deploy_s") for n, t in targets.items()},
                "summary": summary, "ratios": ratios, "websocket": websocket, "listeners": listeners,
                "haproxy_routing": routing,
                "goals": {"seq_p50": SEQ_GOAL, "rps": RPS_GOAL, "moonshot": MOONSHOT},
            })
    finally:
        uvicorn.terminate()
        uvicorn.wait(10)
        shutil.rmtree(scripts, ignore_errors=True)


if __name__ == "__main__":
    main()
