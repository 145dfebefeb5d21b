"""How a sandbox's agent is started: inside bubblewrap where the node allows it, plainly where not.

With ``bwrap`` (Debian's ``bubblewrap``) a sandbox gets

- its own root: the node's system folders and the sandbox Python read-only, ``/workspace`` writable
  (a per-sandbox folder on the node), a private ``/tmp``, its own ``/proc`` and ``/dev``;
- its own process tree (``--unshare-pid``, ``--die-with-parent``): killing the agent kills everything in it;
- an unprivileged user: uid/gid 65534 (``nobody``). A root worker runs bwrap as root and drops to 65534
  with ``setpriv`` (no capabilities, ``no_new_privs``); a non-root worker uses a user namespace that maps
  65534 onto its own uid;
- no network with ``block_network`` (``--unshare-net``: only a loopback of its own).

Where bwrap is missing or cannot create namespaces, the agent runs as a plain child of the actor, in the
workspace folder, as the worker's user; ``describe()["isolation"]`` says so.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

SANDBOX_UID = 65534
WORKSPACE = "/workspace"
AGENT_DIR = "/run/beamray"
# The node's folders a sandbox sees read-only (home folders, /root, /tmp and the node's /run are not among them).
SYSTEM_FOLDERS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt")
AGENT_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent.py")


@dataclass(frozen=True)
class Isolation:
    """What this node can do: ``mode`` is ``"bubblewrap"`` or ``"none"``; ``detail`` says why or how."""

    mode: str
    detail: str


@functools.lru_cache(maxsize=1)
def probe() -> Isolation:
    """Whether bwrap can build a sandbox here (checked once per process by running one)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Isolation("none", "bwrap not found (install Debian's bubblewrap); processes run unisolated "
                                 "as the worker's user")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return Isolation("none", "setpriv not found (util-linux); cannot drop to an unprivileged user")
    probe_cmd = [bwrap, *_user_flags(), "--ro-bind", "/", "/", "--unshare-pid", "--", "true"]
    try:
        result = subprocess.run(probe_cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Isolation("none", f"bwrap failed to start: {exc}")
    if result.returncode != 0:
        return Isolation("none", f"bwrap cannot create namespaces here ({result.stderr.strip()}); "
                                 "processes run unisolated as the worker's user")
    user = "uid 65534 via setpriv" if os.geteuid() == 0 else "uid 65534 in a user namespace"
    return Isolation("bubblewrap", f"bubblewrap {user}, own mount and pid namespaces")


def _user_flags() -> list[str]:
    return [] if os.geteuid() == 0 else ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]


def _python_folders() -> list[str]:
    """The sandbox Python and its packages (the image's runtime env when it has one), outermost first."""
    folders = {os.path.realpath(path) for path in (sys.prefix, sys.base_prefix, os.path.dirname(sys.executable))}
    folders |= {os.path.realpath(path) for path in sys.path if "-packages" in path and os.path.isdir(path)}
    chosen: list[str] = []
    for folder in sorted(folders, key=len):
        under_system = folder.split("/")[1:2] and folder.split("/")[1] in SYSTEM_FOLDERS
        if not under_system and not any(folder.startswith(parent + "/") for parent in chosen):
            chosen.append(folder)
    return chosen


def _parents(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def sandbox_path_env() -> str:
    return f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin"


def agent_command(workspace: str, out_dir: str, *, block_network: bool, env: dict[str, str],
                  gpus: bool = False) -> list[str]:
    """The argv that starts the agent for one sandbox (bwrap around it where the node isolates).

    ``gpus``: the actor was given GPUs; their ``/dev/nvidia*`` devices are bound in (``CUDA_VISIBLE_DEVICES``
    comes with ``env``)."""
    python = sys.executable
    if probe().mode != "bubblewrap":
        return [python, "-I", AGENT_SOURCE, out_dir]
    cmd = ["bwrap", *_user_flags(), "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--hostname", "sandbox"]
    if block_network:
        cmd.append("--unshare-net")
    # /tmp first: a runtime env's Python may live under the node's /tmp/ray, bound over the private /tmp.
    cmd += ["--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--tmpfs", "/tmp"]
    if gpus:
        for device in sorted(glob.glob("/dev/nvidia*")):
            cmd += ["--dev-bind-try", device, device]
    for name in SYSTEM_FOLDERS:
        source = "/" + name
        if os.path.islink(source):
            cmd += ["--symlink", os.readlink(source), source]
        elif os.path.isdir(source):
            cmd += ["--ro-bind", source, source]
    made: set[str] = set()
    for folder in _python_folders():
        for parent in _parents(folder):
            if parent not in made and parent != "/tmp" and parent.strip("/").split("/")[0] not in SYSTEM_FOLDERS:
                cmd += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        cmd += ["--ro-bind", folder, folder]
    cmd += ["--perms", "0755", "--dir", "/run", "--perms", "0755", "--dir", AGENT_DIR,
            "--bind", workspace, WORKSPACE, "--bind", out_dir, f"{AGENT_DIR}/out",
            "--ro-bind", AGENT_SOURCE, f"{AGENT_DIR}/agent.py", "--remount-ro", "/", "--chdir", WORKSPACE,
            "--clearenv"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    cmd.append("--")
    if os.geteuid() == 0:
        cmd += ["setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return cmd + [python, "-I", f"{AGENT_DIR}/agent.py", f"{AGENT_DIR}/out"]


def give_to_sandbox_user(path: str) -> None:
    """Make a file or folder the actor wrote owned by the sandbox user (root workers only; a user namespace
    maps the worker's own files to 65534 already)."""
    if os.geteuid() == 0 and probe().mode == "bubblewrap":
        os.chown(path, SANDBOX_UID, SANDBOX_UID, follow_symlinks=False)
