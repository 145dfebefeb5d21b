# Sandbox behaviours, one scenario per argument: `beamray run app.py <scenario> [args]`.
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from beam import Image, Sandbox, SandboxConnectionError, SandboxFileSystemError, SandboxProcessError

scenario = sys.argv[1]


def small(**kwargs):
    return Sandbox(cpu=0.1, memory=64, **kwargs).create()


if scenario == "streaming":
    with small() as sb:
        p = sb.process.exec("python3", "-c", "import time\nfor i in range(3):\n    print('line', i, flush=True)\n"
                                             "    time.sleep(0.7)")
        for line in p.stdout:
            print(line.strip(), p.status()[1])   # each line is read while the process still runs
        print("exit", p.wait())
        q = sb.process.exec("sh", "-c", "echo out; echo err >&2; exit 3")
        print("exit", q.wait(), q.stdout.read().strip(), q.stderr.read().strip(), sorted(q.logs.read().split()))

elif scenario == "kill":
    with small() as sb:
        p = sb.process.exec("sh", "-c", "sleep 300 & sleep 300 & echo started; wait")
        print(next(iter(p.stdout)).strip(), p.status())
        p.kill()
        print("exit", p.wait(timeout=10), p.status())
        ps = sb.process.exec("sh", "-c", "ps -e -o comm= | grep -c sleep")
        ps.wait()
        print("sleeps left", ps.stdout.read().strip())

elif scenario == "readonly":
    with small() as sb:
        p = sb.process.exec("sh", "-c", "touch /etc/owned; touch /owned; touch /workspace/ok && echo ok; id -u")
        p.wait()
        print(p.stdout.read().split())
        print("read-only" in p.stderr.read().lower())
        try:
            sb.fs.write_text("/etc/passwd", "x")
        except SandboxFileSystemError as exc:
            print("refused", exc)

elif scenario == "network":
    port = int(sys.argv[2])
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('connected')"
    for blocked in (False, True):
        with small(block_network=blocked) as sb:
            p = sb.process.run_code(probe)
            print(f"block_network {blocked} exit {p.exit_code} {p.stdout.read().strip()}".strip())

elif scenario == "ttl":
    sb = small(keep_warm_seconds=2)
    print(sb.status())
    time.sleep(5)
    print(sb.poll())
    try:
        sb.process.exec("true")
    except SandboxConnectionError as exc:
        print("gone", exc)

elif scenario == "image":
    with small() as sb:
        sb.process.exec("sh", "-c", "mkdir -p /workspace/something && echo kept > /workspace/something/file.txt").wait()
        image_id = sb.create_image_from_filesystem()
    with small(image=Image.from_id(image_id)) as sb2:
        p = sb2.process.exec("cat", "/workspace/something/file.txt")
        print(image_id.startswith("sandbox-image-"), p.wait(), p.stdout.read().strip())

elif scenario == "concurrency":
    sandboxes, calls = int(sys.argv[2]), int(sys.argv[3])
    boxes = [None] * sandboxes

    def one(index):
        sb = boxes[index] = small()
        sb.fs.write_text("mine.txt", f"box-{index}")
        seen = set()
        for _ in range(calls):
            p = sb.process.exec("sh", "-c", "cat /workspace/mine.txt; ls /workspace | wc -l")
            p.wait()
            seen.add(p.stdout.read())
        return seen

    with ThreadPoolExecutor(sandboxes) as pool:
        results = list(pool.map(one, range(sandboxes)))
    print(all(seen == {f"box-{i}1\n"} for i, seen in enumerate(results)), len(results))
    for sb in boxes:
        sb.terminate()

elif scenario == "errors":
    with small() as sb:
        for attempt in (lambda: sb.process.get_process(99999), lambda: sb.process.exec("no-such-binary"),
                        lambda: sb.fs.read_text("/workspace/../etc/shadow"),
                        lambda: sb.fs.read_text("../../root/.bashrc"),
                        lambda: sb.fs.read_text("/workspace/missing.txt")):
            try:
                attempt()
                print("no error")
            except (SandboxProcessError, SandboxFileSystemError) as exc:
                print(type(exc).__name__, exc)
        sb.process.exec("ln", "-s", "/etc/hostname", "/workspace/link").wait()
        try:
            sb.fs.read_text("link")
        except SandboxFileSystemError as exc:
            print(type(exc).__name__, exc)
    try:
        Sandbox().connect("sandbox-0000")
    except SandboxConnectionError as exc:
        print(type(exc).__name__, exc)
    try:
        Sandbox(docker_enabled=True)
    except NotImplementedError as exc:
        print(type(exc).__name__, exc)
