"""A pod's way out: slirp4netns gives the pod's own network namespace a NAT'd route to the outside.

A pod runs in a network namespace of its own (``runtime.pod``), so that every pod owns its ports; alone,
that namespace has only a loopback and the pod reaches nothing (no package index, no API). Where
``slirp4netns`` is installed (Debian ``slirp4netns``, as rootless Podman uses), it is attached to the
namespace: a ``tap0`` with 10.0.2.100, a default route, and DNS at 10.0.2.3 (the pod's
``/etc/resolv.conf`` says so). ``--disable-host-loopback`` keeps the node's own loopback services (Ray's
ports, the gateway, Redis) out of the pod's reach, as they are out of a Beam container's.

Order: bubblewrap reports the namespace's process on its info fd, slirp4netns attaches to it, and only
then does the pod's bridge start the entrypoint (it waits for ``ready_file``), so an entrypoint that
downloads at once finds the network up. slirp4netns ends with the pod's container: it holds the read
end of a pipe whose write end only the container's actor holds (``--exit-fd``).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time

RESOLVER = "10.0.2.3"  # slirp4netns's DNS forwarder, inside the pod's namespace
ATTACH_TIMEOUT_S = 10.0
READY_ENV = "BEAMRAY_POD_NETWORK_READY"  # the file the bridge waits for before it starts the entrypoint


def available() -> bool:
    return shutil.which("slirp4netns") is not None


def _wait_readable(fd: int, deadline: float) -> bool:
    remaining = deadline - time.monotonic()
    return remaining > 0 and bool(select.select([fd], [], [], remaining)[0])


def namespace_pid(info_read: int, timeout: float = ATTACH_TIMEOUT_S) -> int | None:
    """The pid of the pod's namespaces' first process, as bubblewrap reports it on its info fd (closed here;
    None when bubblewrap ended without reporting)."""
    deadline, data = time.monotonic() + timeout, b""
    try:
        while _wait_readable(info_read, deadline) and (chunk := os.read(info_read, 4096)):
            data += chunk
            try:
                return int(json.loads(data)["child-pid"])
            except ValueError:
                continue
        return None
    finally:
        os.close(info_read)


def _has_own_user_namespace(pid: int) -> bool:
    """Whether bubblewrap made ``pid`` a user namespace of its own (it does when it is not setuid), which
    slirp4netns and nsenter then have to enter too."""
    return os.readlink("/proc/self/ns/user") != os.readlink(f"/proc/{pid}/ns/user")


def entering(pid: int, cwd: str) -> list[str]:
    """The ``nsenter`` prefix that runs a command in ``pid``'s network, pid and mount namespaces, from
    ``cwd``: ``container exec`` of a pod, which then sees the pod's own ports and processes."""
    user = ["--user", "--preserve-credentials"] if _has_own_user_namespace(pid) else []
    return ["nsenter", f"--target={pid}", *user, "--net", "--pid", "--mount", f"--wd={cwd}", "--"]


class Outbound:
    """The outbound network of one pod: its resolver file bound before bubblewrap starts, slirp4netns
    attached right after."""

    def __init__(self, folder: str) -> None:
        self.ready_file = os.path.join(folder, "network.ready")
        self._resolv = os.path.join(folder, "resolv.conf")
        with open(self._resolv, "w") as handle:
            handle.write(f"nameserver {RESOLVER}\n")
        self._log = os.path.join(folder, "slirp4netns.log")
        self._exit_write: int | None = None
        self._process: subprocess.Popen | None = None

    def bwrap_args(self) -> list[str]:
        return ["--ro-bind", self._resolv, "/etc/resolv.conf"]

    def attach(self, pid: int | None) -> str:
        """Attach slirp4netns to the namespace of ``pid``; '' when up, else why not. Either way the
        entrypoint may start now (without a network when this failed)."""
        try:
            return self._attach(pid, time.monotonic() + ATTACH_TIMEOUT_S) if pid else \
                "bubblewrap did not report its namespace"
        finally:
            open(self.ready_file, "w").close()

    def _attach(self, pid: int, deadline: float) -> str:
        ready_read, ready_write = os.pipe()
        exit_read, self._exit_write = os.pipe()
        userns = [f"--userns-path=/proc/{pid}/ns/user"] if _has_own_user_namespace(pid) else []
        command = ["slirp4netns", *userns, "--configure", "--mtu=65520", "--disable-host-loopback",
                   f"--ready-fd={ready_write}", f"--exit-fd={exit_read}", str(pid), "tap0"]
        try:
            with open(self._log, "wb") as log:
                self._process = subprocess.Popen(command, pass_fds=(ready_write, exit_read), stdin=subprocess.DEVNULL,
                                                 stdout=log, stderr=log, start_new_session=True)
        except OSError as exc:
            return f"slirp4netns: {exc.strerror or exc}"
        finally:
            os.close(ready_write)
            os.close(exit_read)
        try:
            if _wait_readable(ready_read, deadline) and os.read(ready_read, 1) == b"1":
                return ""
        finally:
            os.close(ready_read)
        self.close()
        with open(self._log, errors="replace") as log:
            return "slirp4netns: " + (log.read().strip().splitlines() or ["not ready in time"])[-1]

    def close(self) -> None:
        """End slirp4netns (the pod has ended)."""
        if self._exit_write is not None:
            os.close(self._exit_write)
            self._exit_write = None
        if self._process is not None and self._process.poll() is None:
            try:
                self._process.wait(2)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
