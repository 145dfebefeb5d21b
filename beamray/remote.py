"""Running beamray commands on a remote cluster through Ray's job submission API.

With ``BEAMRAY_ADDRESS=http(s)://<head>:8265`` (the Ray dashboard), a command is submitted as a Ray job
whose working directory is the caller's (Beam syncs it the same way) and whose entrypoint is the same
``beamray`` command; it runs on the head as a local driver, and its output is streamed back. Token auth
works as for any Ray client: ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token`` on the caller's machine.

A job's entrypoint, env vars and logs are shown by the dashboard and its API, so secret values never go
there: ``secret create|modify`` ship the value in a file of a package of the job's own (which only the
cluster reads), and every command gets a one-time key shipped the same way (``py_modules``), under which
what it prints of secrets (``secret show``'s value, ``deploy``'s token) is sealed; only the caller opens
it. Store credentials (``BEAMRAY_REDIS_URL``) are never forwarded: the cluster has its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib
import os
import re
import secrets as _random
import shlex
import sys
import tempfile
from pathlib import Path

from beamray.private_files import private_dirs, private_opener

# Settings a remote command needs from the caller's environment (never secrets: those live on the cluster).
FORWARDED_ENV = ("BEAMRAY_HTTP_PORT", "BEAMRAY_GATEWAY_URL", "BEAMRAY_STORAGE_URL", "BEAMRAY_S3_ENDPOINT_URL")
SEAL_MODULE = "beamray_job_seal"  # the job's private package: its one-time key, a secret value
_SEALED = re.compile(r"beamray-sealed:([0-9a-f]*)")
_EXCLUDES = [".git", "__pycache__", "*.pyc", ".venv", "venv", "node_modules", ".pytest_cache"]


def is_job_address(address: str | None) -> bool:
    return bool(address) and address.startswith(("http://", "https://"))


def run_cli(address: str, argv: list[str], working_dir: str | None = None) -> int:
    """Run ``beamray <argv>`` on the cluster at ``address``; returns its exit status (0 when it succeeded)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    from beamray.cluster import prepare_ray_environment

    prepare_ray_environment()
    client = JobSubmissionClient(address)
    env_vars = {key: os.environ[key] for key in FORWARDED_ENV if os.environ.get(key)}
    with tempfile.TemporaryDirectory(prefix="beamray-job-") as private:
        seal_key = _random.token_bytes(32)
        command = _private_package(argv, os.path.join(private, SEAL_MODULE), seal_key)
        runtime_env = {"working_dir": working_dir or os.getcwd(), "excludes": _EXCLUDES, "env_vars": env_vars,
                       "py_modules": [os.path.join(private, SEAL_MODULE)]}
        job_id = client.submit_job(entrypoint=shlex.join(["python", "-m", "beamray.cli", *command]),
                                   runtime_env=runtime_env)

    async def follow() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(_SEALED.sub(lambda m: unseal(seal_key, m.group(1)), chunk))
            sys.stdout.flush()

    asyncio.run(follow())
    status = client.get_job_status(job_id)
    if status != JobStatus.SUCCEEDED:
        message = client.get_job_info(job_id).message or status.value
        print(f"=> Remote command {status.value.lower()}: {message}", file=sys.stderr)
        return 1
    return 0


def _private_package(argv: list[str], folder: str, seal_key: bytes) -> list[str]:
    """Write the job's private package (its seal key; a secret value moved out of the command line) and
    return the command to submit."""
    private_dirs(Path(folder))
    contents = {"KEY": seal_key.hex(), "VALUE": None}
    command = argv
    if len(argv) >= 4 and argv[0] == "secret" and argv[1] in ("create", "modify", "update") \
            and not argv[3].startswith("-"):
        contents["VALUE"] = argv[3]
        command = [*argv[:3], "--value-from-job", *argv[4:]]
    with open(os.path.join(folder, "__init__.py"), "w", opener=private_opener) as file:
        file.write("".join(f"{name} = {value!r}\n" for name, value in contents.items()))
    return command


def _job_package() -> object | None:
    """This process's private package when it runs as a remote command (see ``run_cli``), else None."""
    try:
        return importlib.import_module(SEAL_MODULE)
    except ImportError:
        return None


def shipped_value() -> str:
    """The secret value a remote ``secret create|modify`` shipped in the job's private package."""
    package = _job_package()
    value = getattr(package, "VALUE", None)
    if not isinstance(value, str):
        raise ValueError("no secret value was shipped with this command; pass VALUE")
    return value


def for_caller(text: str) -> str:
    """``text`` as a command prints it: sealed for the caller in a remote job (its log is public to the
    cluster), as it is otherwise."""
    package = _job_package()
    return seal(bytes.fromhex(package.KEY), text) if package is not None else text


def _keystream(key: bytes, length: int) -> bytes:
    """HMAC-SHA256 in counter mode: a one-time key's stream to XOR a value with (stdlib only)."""
    blocks = (hmac.new(key, counter.to_bytes(8, "big"), hashlib.sha256).digest()
              for counter in range((length + 31) // 32))
    return b"".join(blocks)[:length]


def seal(key: bytes, value: str) -> str:
    """``beamray-sealed:<hex>``: what ``secret show`` prints on a remote cluster instead of the value."""
    data = value.encode()
    return "beamray-sealed:" + bytes(a ^ b for a, b in zip(data, _keystream(key, len(data)))).hex()


def unseal(key: bytes, sealed_hex: str) -> str:
    data = bytes.fromhex(sealed_hex)
    return bytes(a ^ b for a, b in zip(data, _keystream(key, len(data)))).decode(errors="replace")
