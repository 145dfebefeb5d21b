"""Remote deploys: a second local Ray head, token auth on, reached only through its job-submission
address (``BEAMRAY_ADDRESS=http://…:dashboard``) — the same path a cluster on EKS is used through."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import clean_environment, free_port

REPO = Path(__file__).resolve().parents[2]


def beamray(env, *args):
    return subprocess.run([sys.executable, "-m", "beamray.cli", *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def remote_cluster(tmp_path_factory):
    """The 'remote' head, started with its own home; the client knows only its dashboard URL."""
    head_env = clean_environment()
    head_env.update(BEAMRAY_HOME=str(tmp_path_factory.mktemp("remote-head")), BEAMRAY_LOCAL_PORT=str(free_port()),
                    BEAMRAY_LOCAL_CPUS="2", RAY_AUTH_MODE="token")
    up = beamray(head_env, "cluster", "up")
    assert up.returncode == 0, up.stderr
    dashboard = json.loads(beamray(head_env, "cluster", "status", "--json").stdout)["dashboard_url"]
    client_env = clean_environment()
    client_env.update(BEAMRAY_HOME=str(tmp_path_factory.mktemp("remote-client")), BEAMRAY_ADDRESS=dashboard,
                      BEAMRAY_HTTP_PORT=str(free_port()))
    yield client_env
    beamray(head_env, "cluster", "down")


def test_deploy_and_call_through_the_job_submission_path(remote_cluster):
    deployed = beamray(remote_cluster, "deploy", "tests/apps/web_app.py:multiply", "--json")
    assert deployed.returncode == 0, deployed.stderr + deployed.stdout
    body = json.loads(deployed.stdout[deployed.stdout.index("{"):deployed.stdout.rindex("}") + 1])
    assert body["name"] == "multiply" and body["version"] == 1
    shown = beamray(remote_cluster, "config", "show", "--json")  # config is local: the token comes remotely
    listed = beamray(remote_cluster, "deployment", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"multiply"' in listed.stdout and shown.returncode == 0


def test_remote_secret_and_task_commands_run_on_the_cluster(remote_cluster):
    created = beamray(remote_cluster, "secret", "create", "REMOTE_KEY", "v1")
    assert created.returncode == 0 and "Created secret with name: 'REMOTE_KEY'" in created.stdout
    shown = beamray(remote_cluster, "secret", "show", "REMOTE_KEY")
    assert "=> Secret 'REMOTE_KEY': v1" in shown.stdout
    assert beamray(remote_cluster, "task", "list", "--json").returncode == 0


def test_secret_values_never_reach_the_clusters_job_metadata_or_logs(remote_cluster, monkeypatch):
    """The dashboard and /api/jobs show every job's entrypoint, env and logs to anyone with the token."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # this process reads /api/jobs with the head's token below
    value = "s3cr3t-value-7f1c"
    assert beamray(remote_cluster, "secret", "create", "HIDDEN_KEY", value).returncode == 0
    assert beamray(remote_cluster, "secret", "modify", "HIDDEN_KEY", value + "-2").returncode == 0
    shown = beamray(remote_cluster, "secret", "show", "HIDDEN_KEY")
    assert f"=> Secret 'HIDDEN_KEY': {value}-2" in shown.stdout  # the caller still reads it
    deployed = beamray(remote_cluster, "deploy", "tests/apps/web_app.py:multiply")
    token = re.search(r"Authorization: Bearer ([^' ]+)'", deployed.stdout).group(1)
    assert len(token) > 20 and "sealed" not in token  # the caller gets Beam's curl line with the token
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(remote_cluster["BEAMRAY_ADDRESS"])
    jobs = client.list_jobs()
    assert jobs and all(value not in json.dumps(job.dict(), default=str) for job in jobs)
    logs = [client.get_job_logs(job.submission_id) for job in jobs if job.submission_id]
    assert logs and all(value not in log and token not in log for log in logs)


def test_remote_failure_is_reported_with_a_nonzero_exit(remote_cluster):
    failed = beamray(remote_cluster, "deployment", "stop", "no-such-deployment")
    assert failed.returncode == 1 and "no deployment matches" in failed.stdout + failed.stderr


def test_library_calls_refuse_a_job_address_with_a_clear_error(remote_cluster):
    script = "from beamray import cluster\ncluster.connect()\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env=remote_cluster, cwd=REPO)
    assert result.returncode == 1 and "is a job-submission address" in result.stderr
