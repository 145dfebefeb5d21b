"""Running beamray commands on a remote cluster through Ray's job submission API.

With ``BEAMRAY_ADDRESS=http(s)://<head>:8265`` (the Ray dashboard), a command is submitted as a Ray job
whose working directory is the caller's (Beam syncs it the same way) and whose entrypoint is the same
``beamray`` command; it runs on the head as a local driver, and its output is streamed back. Token auth
works as for any Ray client: ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token`` on the caller's machine.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys

# Settings a remote command needs from the caller's environment (never secrets: those live on the cluster).
FORWARDED_ENV = ("BEAMRAY_HTTP_PORT", "BEAMRAY_GATEWAY_URL", "BEAMRAY_REDIS_URL", "BEAMRAY_STORAGE_URL",
                 "BEAMRAY_S3_ENDPOINT_URL")
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
    runtime_env = {"working_dir": working_dir or os.getcwd(), "excludes": _EXCLUDES, "env_vars": env_vars}
    job_id = client.submit_job(entrypoint=shlex.join(["python", "-m", "beamray.cli", *argv]),
                               runtime_env=runtime_env)

    async def follow() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    asyncio.run(follow())
    status = client.get_job_status(job_id)
    if status != JobStatus.SUCCEEDED:
        message = client.get_job_info(job_id).message or status.value
        print(f"=> Remote command {status.value.lower()}: {message}", file=sys.stderr)
        return 1
    return 0
