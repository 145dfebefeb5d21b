"""Running beamray commands on a remote cluster through Ray's job submission API.

With ``BEAMRAY_ADDRESS=http(s)://<head>:8265`` (the Ray dashboard), a command is submitted as a Ray job
whose working directory is the caller's (Beam syncs it the same way) and whose entrypoint is the same
``beamray`` command; it runs on the head as a local driver, and its output is streamed back. Token auth
works as for any Ray client: ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token`` on the caller's machine.

A job's entrypoint, env vars and logs are shown by the dashboard and its API, so secret values never go
there: ``secret create|modify`` ship the value in a file of the job's package (which only the cluster
reads), and ``secret show`` prints the value sealed under a one-time key shipped the same way, which only
the caller can open. Store credentials (``BEAMRAY_REDIS_URL``) are never forwarded: the cluster has its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets as _random
import shlex
import sys
import tempfile

# Settings a remote command needs from the caller's environment (never secrets: those live on the cluster).
FORWARDED_ENV = ("BEAMRAY_HTTP_PORT", "BEAMRAY_GATEWAY_URL", "BEAMRAY_STORAGE_URL", "BEAMRAY_S3_ENDPOINT_URL")
VALUE_FILE = ".beamray-secret-value"
SEAL_FILE = ".beamray-seal"
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
        command, seal_key = _protect_secrets(argv, private)
        # A secret command's package is the private folder alone; any other command ships the caller's cwd.
        package = private if command is not argv else working_dir or os.getcwd()
        runtime_env = {"working_dir": package, "excludes": _EXCLUDES, "env_vars": env_vars}
        job_id = client.submit_job(entrypoint=shlex.join(["python", "-m", "beamray.cli", *command]),
                                   runtime_env=runtime_env)

    async def follow() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(_SEALED.sub(lambda m: unseal(seal_key, m.group(1)), chunk) if seal_key else chunk)
            sys.stdout.flush()

    asyncio.run(follow())
    status = client.get_job_status(job_id)
    if status != JobStatus.SUCCEEDED:
        message = client.get_job_info(job_id).message or status.value
        print(f"=> Remote command {status.value.lower()}: {message}", file=sys.stderr)
        return 1
    return 0


def _protect_secrets(argv: list[str], folder: str) -> tuple[list[str], bytes | None]:
    """The command to submit, with a secret value moved into ``folder`` (shipped as the job's package), and
    for ``secret show`` the one-time key its output is sealed with."""
    if len(argv) >= 4 and argv[0] == "secret" and argv[1] in ("create", "modify", "update") \
            and not argv[3].startswith("-"):
        with open(os.path.join(folder, VALUE_FILE), "w", opener=_private_opener) as file:
            file.write(argv[3])
        return [*argv[:3], "--value-file", VALUE_FILE, *argv[4:]], None
    if len(argv) >= 3 and argv[:2] == ["secret", "show"]:
        key = _random.token_bytes(32)
        with open(os.path.join(folder, SEAL_FILE), "wb", opener=_private_opener) as file:
            file.write(key)
        return [*argv, "--sealed-with", SEAL_FILE], key
    return argv, None


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


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
