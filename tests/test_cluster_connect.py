"""How a driver joins the cluster: which runtime env its job carries (none when the workers' fits)."""

from __future__ import annotations

import json

import pytest

from beamray import cluster, locations

pytestmark = pytest.mark.cluster


def test_a_driver_matching_the_embedded_head_needs_no_job_runtime_env(ray_cluster):
    assert ray_cluster["worker_settings"] == locations.worker_settings()
    assert cluster.job_runtime_env(ray_cluster) is None


def test_settings_that_differ_from_the_head_travel_as_env_vars(ray_cluster, monkeypatch, tmp_path):
    elsewhere = str(tmp_path / "elsewhere")
    monkeypatch.setenv("BEAMRAY_STORAGE_URL", elsewhere)
    runtime_env = cluster.job_runtime_env(ray_cluster)
    assert runtime_env == {"env_vars": {**ray_cluster["worker_settings"], "BEAMRAY_STORAGE_URL": elsewhere}}


def test_a_remote_cluster_gets_the_settings_and_the_working_directory(ray_cluster, monkeypatch, tmp_path):
    monkeypatch.setenv("BEAMRAY_ADDRESS", "127.0.0.1:1")  # only read here, nothing connects to it
    monkeypatch.chdir(tmp_path)
    runtime_env = cluster.job_runtime_env(None)
    assert runtime_env["working_dir"] == str(tmp_path)
    assert runtime_env["env_vars"]["BEAMRAY_SECRETS"] == "kv"


def test_a_submitted_job_keeps_its_own_working_dir_and_env(ray_cluster, monkeypatch):
    job = {"runtime_env": {"working_dir": "gcs://_ray_pkg_x.zip", "env_vars": {"BEAMRAY_STORAGE_URL": "s3://b"}}}
    monkeypatch.setenv("BEAMRAY_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(job))  # as Ray's job supervisor sets it
    runtime_env = cluster.job_runtime_env(None)
    assert "working_dir" not in runtime_env
    assert "BEAMRAY_STORAGE_URL" not in runtime_env["env_vars"]
    assert runtime_env["env_vars"]["BEAMRAY_SECRETS"] == "kv"
