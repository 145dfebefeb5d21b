"""The in-sandbox agent: one long-lived process inside the sandbox that starts and kills its processes.

Started once per sandbox (inside bubblewrap, already as the unprivileged user), so an ``exec`` costs a
fork+exec inside the sandbox rather than a new bwrap each time. Standard library only: it runs on the
sandbox's Python with ``-I``. Protocol, one JSON object a line:

- stdin  ``{"id": n, "op": "exec", "args": [...], "cwd": str, "env": {...}, "stdin": str|null}``
         ``{"id": n, "op": "kill", "pid": p}``
- stdout ``{"id": n, "pid": p}`` | ``{"id": n, "error": "message"}`` | ``{"id": n, "ok": true}``
         ``{"exit": p, "code": c}`` when a process ends.

A process's stdout/stderr go straight to ``<out>/<n>.stdout`` / ``.stderr``, which the actor reads as they
grow; each process leads its own process group, so ``kill`` ends its whole tree.
"""

import json
import os
import signal
import subprocess
import sys
import threading

_write_lock = threading.Lock()


def _send(message):
    with _write_lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def _reap(proc):
    code = proc.wait()
    _send({"exit": proc.pid, "code": code})


def _feed(pipe, data):
    try:
        pipe.write(data.encode())
    finally:
        pipe.close()


def _exec(request, out_dir):
    key = str(request["id"])
    env = dict(os.environ)
    env.update(request.get("env") or {})
    stdin = request.get("stdin")
    with open(os.path.join(out_dir, key + ".stdout"), "wb") as out, \
            open(os.path.join(out_dir, key + ".stderr"), "wb") as err:
        proc = subprocess.Popen(request["args"], cwd=request.get("cwd") or None, env=env, stdout=out, stderr=err,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                start_new_session=True)
    if stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
    threading.Thread(target=_reap, args=(proc,), daemon=True).start()
    return proc.pid


def main():
    out_dir = sys.argv[1]
    _send({"ready": os.getpid()})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "exec":
                _send({"id": request["id"], "pid": _exec(request, out_dir)})
            elif request["op"] == "kill":
                try:
                    os.killpg(request["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _send({"id": request["id"], "ok": True})
        except (OSError, subprocess.SubprocessError, ValueError, TypeError) as exc:
            _send({"id": request["id"], "error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main()
