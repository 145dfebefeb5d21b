"""``beamray run``: run an unchanged Beam program, or run a Pod as Beam's ``run`` does.

- ``beamray run FILE.py [ARGS…]``: FILE runs as ``__main__`` with ``import beam`` resolving to beamray.
- ``beamray run FILE.py:POD [FLAGS]``: one container of that ``Pod`` (the ``:OBJECT`` suffix tells them apart).
- ``beamray run --image … --ports 8888 --entrypoint "cmd"``: Beam's handler-less form, ``Pod(entrypoint=…)``.

The pod forms take Beam's override flags (``--cpu``, ``--memory``, ``--gpu``, ``--env``, ``--ports``, …),
which ``beamray deploy`` takes for pods too (``pod_overrides``). Without ``--detach`` the command waits while
the container runs and stops it on Ctrl-C.
"""

from __future__ import annotations

import os
import runpy
import shlex
import sys
import time
from typing import Any, Callable

import click

from beamray.cli.common import BEAMRAY_ERRORS, explained, print_json, say


def _pod_flags(func: Callable[..., Any]) -> Callable[..., Any]:
    """Beam's deploy-time override flags that a pod can honour (beam-api.md §10)."""
    flags = [
        click.option("--cpu", type=float, help="CPU cores."),
        click.option("--memory", help="Memory, e.g. 1Gi or 512 (MiB)."),
        click.option("--gpu", help="GPU type, e.g. A10G."),
        click.option("--gpu-count", type=int, help="Number of GPUs."),
        click.option("--secrets", help="Secret names, comma-separated."),
        click.option("--ports", help="Ports to expose, comma-separated (e.g. 8000,8001)."),
        click.option("--port", "port_list", type=int, multiple=True, help="A port to expose (repeatable)."),
        click.option("--entrypoint", "--command", "entrypoint", help="The command to run, e.g. \"python app.py\"."),
        click.option("--image", help="A base image, e.g. python:3.11 (needs a container runtime)."),
        click.option("--env", multiple=True, help="K=V, merged into the pod's env (repeatable)."),
        click.option("--keep-warm-seconds", type=int, help="Idle seconds before it stops (-1: never)."),
        click.option("--tcp", is_flag=True, default=None, help="Expose raw TCP (not supported by beamray)."),
    ]
    for flag in reversed(flags):
        func = flag(func)
    return func


def pod_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The ``Pod`` arguments the given flags replace (the flag values popped from ``options``)."""
    from beamray.adapters.image import Image

    found = {key: options.pop(key, None) for key in ("cpu", "memory", "gpu", "gpu_count", "secrets", "ports",
                                                     "port_list", "entrypoint", "image", "env",
                                                     "keep_warm_seconds", "tcp")}
    changes: dict[str, Any] = {key: found[key] for key in ("cpu", "memory", "gpu", "gpu_count", "keep_warm_seconds",
                                                          "tcp") if found[key] is not None}
    if found["secrets"]:
        changes["secrets"] = [name.strip() for name in found["secrets"].split(",") if name.strip()]
    ports = [part.strip() for part in (found["ports"] or "").split(",") if part.strip()]
    if ports or found["port_list"]:
        if not all(part.isdigit() for part in ports):
            raise click.BadParameter(f"{found['ports']!r} is not a list of port numbers", param_hint="--ports")
        changes["ports"] = [int(part) for part in ports] + list(found["port_list"] or ())
    if found["entrypoint"]:
        changes["entrypoint"] = shlex.split(found["entrypoint"])
    if found["image"]:
        changes["image"] = Image(base_image=found["image"])
    if found["env"]:
        pairs = [item.partition("=") for item in found["env"]]
        if any(not sep or not key for key, sep, _ in pairs):
            raise click.BadParameter("use --env KEY=VALUE", param_hint="--env")
        changes["env"] = {key: value for key, _, value in pairs}
    return changes


def apply_pod_overrides(pod: Any, changes: dict[str, Any]) -> Any:
    """``pod`` with the flags' changes; ``--env`` merges into the pod's own env (as Beam's)."""
    if "env" in changes:
        changes = {**changes, "env": {**dict(pod.arguments["env"] or {}), **changes["env"]}}
    return pod.with_options(**changes) if changes else pod


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@_pod_flags
@click.option("--detach", is_flag=True, help="Pods: return once the container runs.")
@click.option("--name", help="Pods: the container's name.")
@click.option("--json", "as_json", is_flag=True, help="Pods: print the container as JSON (needs --detach).")
@click.argument("target", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(target: str | None, args: tuple[str, ...], detach: bool, name: str | None, as_json: bool,
        **flags: Any) -> None:
    """Run FILE.py as a program, or FILE.py:POD / --entrypoint CMD as a Pod."""
    changes = pod_overrides(flags)
    if target is not None and not target.rpartition(":")[0].endswith(".py"):  # FILE.py, not FILE.py:OBJECT
        if changes or detach or as_json:
            raise click.UsageError("pod flags (--entrypoint, --ports, --detach, …) need a FILE.py:POD or no FILE")
        _run_program(target, args)
        return
    if target is not None and args:  # flags after FILE.py:POD
        extra = dict(run.make_context("run", list(args)).params)
        if extra["target"] is not None:
            raise click.UsageError(f"unexpected argument {extra['target']!r} after {target}")
        changes.update(pod_overrides(extra))
        detach, as_json, name = detach or extra["detach"], as_json or extra["as_json"], name or extra["name"]
    if as_json and not detach:
        raise click.UsageError("--json requires --detach")
    try:
        _run_pod(target, changes, detach, name, as_json)
    except BEAMRAY_ERRORS as exc:
        raise explained(exc) from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def _run_program(file: str, args: tuple[str, ...]) -> None:
    from beamray import drop_in

    if not os.path.isfile(file):
        raise click.BadParameter(f"file {file!r} does not exist", param_hint="FILE")
    drop_in.install()
    path = os.path.abspath(file)
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(path))
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            raise
    except BEAMRAY_ERRORS as exc:  # beamray's own errors read as one message; the user's keep their traceback
        raise explained(exc) from exc
    sys.stdout.flush()


def _run_pod(target: str | None, changes: dict[str, Any], detach: bool, name: str | None, as_json: bool) -> None:
    from beamray import cluster
    from beamray.adapters.pod import Pod
    from beamray.cli.loading import load_handler

    cluster.forward_worker_logs(not detach)  # attached: the container's output streams here
    if target is None:
        if not changes.get("entrypoint"):
            raise click.UsageError("give FILE.py (a program), FILE.py:POD, or --entrypoint CMD (a pod)")
        pod, root = Pod(**changes), os.getcwd()
    else:
        found, root = load_handler(target)
        if not isinstance(found, Pod):
            raise click.BadParameter(f"{target} is not a Pod (Expected a Pod abstraction)", param_hint="HANDLER")
        pod = apply_pod_overrides(found, changes)
    from beamray.adapters.pod import create

    if not as_json:
        say("Creating container")
    instance = create(pod.spec(name=name or ""), code_root=root)
    if not instance.ok:
        raise click.ClickException(instance.error_msg)
    if as_json:
        print_json({"container_id": instance.container_id, "url": instance.url, "ok": instance.ok})
        return
    say(f"Container created successfully ===> {instance.container_id}")
    click.echo(f"\n✨ Container hosted at: {instance.url}")
    if detach:
        return
    try:
        while (state := instance.status()).status in ("PENDING", "RUNNING"):
            time.sleep(1)
    except KeyboardInterrupt:
        instance.terminate()
        say(f"Stopped {instance.container_id}")
        return
    say(f"Container {instance.container_id} ended: {state.status} (exit code {state.exit_code})")
    if state.status == "FAILED":
        click.echo(state.output_tail)
        raise SystemExit(state.exit_code or 1)


COMMANDS = [run]
