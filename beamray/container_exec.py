"""``beamray container exec ID -- CMD…``: a command run in one container's environment, its output streamed.

See :func:`exec_command` for why it is a Ray task beside the container rather than a call into it.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Iterator

import ray

from beamray.containers import Container, find, on_node, runtime_env


def _identity(container: Container) -> dict[str, str]:
    """Beam's container variables, as the container's own process has them."""
    variables = {"CONTAINER_ID": container.container_id}
    if container.kind == "function" and container.ray_task_id:
        variables.update(STUB_TYPE="function", TASK_ID=container.task_id)
        return variables
    if container.stub_id:
        variables["STUB_ID"] = container.stub_id
    deployed = container.kind != "pod" or container.deployment_id
    variables["STUB_TYPE"] = f"{container.kind}/deployment" if deployed else container.kind
    return variables


def _runtime_spec(container: Container) -> Any:
    """The deployment's ``RuntimeSpec`` (env, secret names, volumes) from its launch spec in the registry."""
    import cloudpickle

    from beamray.registry import Registry
    from beamray.specs import RuntimeSpec

    registry = Registry()
    record = next((r for r in registry.records() if r.deployment_id == container.deployment_id), None)
    blob = registry.launch_blob(record) if record is not None else None
    spec = cloudpickle.loads(blob) if blob else None
    return getattr(spec, "runtime", None) or RuntimeSpec()


TIMED_OUT = 124  # the exit code of a command past ``--timeout`` (as coreutils' ``timeout`` has it)


def _run_command(command: list[str], pid: int | None, runtime: Any, identity: dict[str, str], cwd: str,
                 timeout: float | None, namespace_pid: int | None = None) -> Any:
    """On the container's node, in its runtime env: the command's output chunks, then its exit code.

    ``namespace_pid``: a pod's namespaces' first process; the command enters them (its network, pid and
    mount namespaces), so it sees the pod's own ports and processes."""
    import selectors
    import subprocess
    import sys
    import time

    from beamray.runtime import pod_network
    from beamray.runtime.worker import task_environment

    try:
        home = os.readlink(f"/proc/{pid}/cwd") if pid else os.getcwd()
    except OSError:  # the container's process ended, or belongs to another user: its code directory
        home = os.getcwd()
    if namespace_pid:
        command = pod_network.entering(namespace_pid, os.path.join(home, cwd)) + command
    with task_environment(runtime.env, runtime.secrets, identity, runtime.volumes):
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        try:
            process = subprocess.Popen(command, cwd=os.path.join(home, cwd), env=env, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            yield ("stderr", f"{exc.filename or command[0]}: {exc.strerror or exc}\n".encode())
            yield ("exit", 127 if isinstance(exc, FileNotFoundError) else 126)
            return
        deadline = time.monotonic() + timeout if timeout else None
        try:
            selector = selectors.DefaultSelector()
            selector.register(process.stdout, selectors.EVENT_READ, "stdout")
            selector.register(process.stderr, selectors.EVENT_READ, "stderr")
            while selector.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    yield ("stderr", f"container exec: timed out after {timeout:g}s\n".encode())
                    yield ("exit", TIMED_OUT)
                    return
                for key, _ in selector.select(left):
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        yield (key.data, chunk)
                    else:
                        selector.unregister(key.fileobj)
            yield ("exit", process.wait())
        finally:
            if process.poll() is None:  # timed out, or the caller went away (Ctrl-C): the command ends too
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def exec_command(container_id: str, command: list[str], cwd: str = "", timeout: float | None = None
                 ) -> Iterator[tuple[str, Any]]:
    """Run ``command`` in the container's environment; yields ``("stdout"|"stderr", bytes)``, then ``("exit", code)``.

    ``cwd`` is relative to the container's working directory (absolute: as given); past ``timeout`` seconds
    the command is killed and the exit code is 124.

    Why a Ray task beside the container rather than a method of its actor: a replica's actor is Serve's,
    and a task worker runs one task at a time, so neither can take a call while busy. A generator task
    pinned to the container's node (NodeAffinitySchedulingStrategy), with the container's own runtime env,
    gets the same shipped code directory (the container process's cwd, read from ``/proc``: its
    ``working_dir`` package or, for a replica without a runtime env, its unpacked code), the same image
    packages and ``BEAMRAY_*`` settings, and
    its volumes mounted at the same paths; the deployment's env and secrets are set from its launch spec,
    as the container's process sets them. Output streams back as it is written; the exit code is the last item.
    """
    if not command:
        raise ValueError("container exec needs a command: beamray container exec ID -- CMD [ARGS…]")
    container = find(container_id)
    if container.kind == "sandbox":
        yield from _exec_in_sandbox(container, list(command), cwd, timeout)
        return
    namespace_pid = _describe(container).get("namespace_pid") if container.kind == "pod" else None
    runtime = _runtime_spec(container)
    remote = on_node(_run_command, container.node_id, runtime_env(container), num_returns="streaming")
    stream = remote.remote(list(command), container.pid, runtime, _identity(container), cwd, timeout, namespace_pid)
    finished = False
    try:
        for ref in stream:
            item = ray.get(ref)
            finished = item[0] == "exit"
            yield item
    finally:
        if not finished:  # interrupted: the task's cleanup ends the command's process group
            ray.cancel(stream)


def _describe(container: Container) -> dict[str, Any]:
    return ray.get(ray.get_actor(container.ray_actor_name, namespace=container.ray_namespace).describe.remote())


def _exec_in_sandbox(container: Container, command: list[str], cwd: str, timeout: float | None
                     ) -> Iterator[tuple[str, Any]]:
    """A sandbox's command runs as its own processes do: through its agent, inside its namespaces, as its
    unprivileged user, from ``/workspace``; its output is read as it grows."""
    import posixpath
    import time

    from beamray.sandbox.isolation import WORKSPACE

    actor = ray.get_actor(container.ray_actor_name, namespace=container.ray_namespace)
    try:
        started = ray.get(actor.exec.remote(command, posixpath.join(WORKSPACE, cwd), None, None))
    except ray.exceptions.RayTaskError as exc:
        yield ("stderr", f"{exc.cause}\n".encode())
        yield ("exit", 127)
        return
    if "exit_code" in started:  # it ended within the agent's grace time: its output came with it
        yield from (("stdout", started["stdout"].encode()), ("stderr", started["stderr"].encode()),
                    ("exit", started["exit_code"]))
        return
    pid, offsets, finished = started["pid"], {"stdout": 0, "stderr": 0}, False
    deadline = time.monotonic() + timeout if timeout else None
    try:
        while offsets:
            if deadline is not None and time.monotonic() > deadline:
                yield ("stderr", f"container exec: timed out after {timeout:g}s\n".encode())
                yield ("exit", TIMED_OUT)
                return
            for stream, offset in list(offsets.items()):
                data, ended = ray.get(actor.read_output.remote(pid, stream, offset, 0.2))
                if data:
                    offsets[stream] += len(data)
                    yield (stream, data)
                if ended and not data:
                    del offsets[stream]
        code = ray.get(actor.wait_process.remote(pid, None))
        finished = True
        yield ("exit", code)
    finally:
        if not finished:  # timed out, or the caller went away: the command ends too
            actor.kill_process.remote(pid)
