"""``beamray run`` runs unchanged Beam programs in a subprocess against the session cluster."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster
APPS = Path(__file__).parent / "apps"


def beamray(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beamray.cli", *args], capture_output=True, text=True,
                          timeout=180, cwd=cwd)


def test_run_executes_an_unchanged_beam_program(ray_cluster):
    result = beamray("run", str(APPS.parent / "conformance" / "apps" / "square_map" / "app.py"))
    assert result.returncode == 0, result.stderr
    assert [int(line) for line in result.stdout.split()] == [i**2 for i in range(10)]


def test_run_passes_arguments_and_resolves_beta9(ray_cluster, tmp_path):
    result = beamray("run", str(APPS / "beam_features.py"), "hello", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ast.literal_eval(result.stdout.strip().splitlines()[-1]) == {
        "tag": "hello", "remote": True, "mode": "test", "has_task": True,
    }


def test_run_reports_a_missing_file():
    result = beamray("run", "no_such_app.py")
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_run_propagates_the_program_exit_code(ray_cluster, tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import sys\nsys.exit(3)\n")
    assert beamray("run", str(script)).returncode == 3


CLUSTER_WARNING_APP = '''
import time
from beam import function

@function(cpu=0.1)
def warn_every_driver():
    import ray
    from ray._private.utils import push_error_to_driver
    push_error_to_driver(ray._private.worker.global_worker, "beamray_test", "cluster-wide warning")

warn_every_driver.remote()
time.sleep(5)  # the driver prints cluster warnings from a background thread
print("program output")
'''


def test_cluster_warnings_go_to_stderr_not_to_the_program_output(ray_cluster, tmp_path):
    script = tmp_path / "warns.py"
    script.write_text(CLUSTER_WARNING_APP)
    result = beamray("run", str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["program", "output"]
    assert "cluster-wide warning" in result.stderr


def test_a_helper_module_that_imports_beam_loads_in_the_workers(ray_cluster, tmp_path):
    (tmp_path / "helpers.py").write_text("from beam import env\n\n\ndef where():\n    return env.is_remote()\n")
    (tmp_path / "app.py").write_text(
        "import helpers\nfrom beam import function\n\n\n@function(cpu=0.1)\ndef remote_where():\n"
        "    return helpers.where()\n\n\nprint(remote_where.remote(), helpers.where())\n")
    result = beamray("run", str(tmp_path / "app.py"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]
