"""A replica's code without a runtime env: published in Ray's KV, unpacked once per node, entered in place.

Runs in Ray workers of the suite's cluster, as a replica or a function task called by one would.
"""

from __future__ import annotations

import os
import stat
import sys

import pytest
import ray

from beamray import code
from beamray.runtime import container


def _project(root, word: str):
    root.mkdir()
    (root / "helpers.py").write_text(f"WORD = {word!r}\n")
    (root / "word.txt").write_text(f"{word} file\n")
    script = root / "start.sh"
    script.write_text("#!/bin/sh\necho started\n")
    script.chmod(0o755)
    return code.package(root)


def enter_and_read(container_code: container.ContainerCode) -> dict:
    """What a container sees after entering ``container_code``: its module, its cwd file, a file mode."""
    blob = __import__("cloudpickle").dumps(lambda: __import__("helpers").WORD)
    read_word = container.load_user_code(blob, "app:handler", container_code)
    return {"word": read_word(), "file": open("word.txt").read().strip(), "cwd": os.getcwd(),
            "executable": bool(os.stat("start.sh").st_mode & stat.S_IXUSR),
            "first_on_path": sys.path[0], "setting": os.environ.get("BEAMRAY_TEST_SETTING")}


# max_calls=1: a worker that entered a project's folder exits after, so no later test runs in it.
_enter_and_read = ray.remote(num_cpus=0, max_calls=1)(enter_and_read)


@pytest.fixture
def archives(ray_cluster, tmp_path):
    made = [_project(tmp_path / "first", "first"), _project(tmp_path / "second", "second")]
    yield [code.publish(archive) for archive in made]
    for archive in made:
        code.unpublish(archive)


def test_a_worker_entering_two_projects_in_turn_imports_and_reads_each_ones_own_files(archives):
    @ray.remote(num_cpus=0, max_calls=1)
    def in_turn(codes: list[container.ContainerCode]) -> list[dict]:
        return [ray.get(_enter_and_read.remote(c)) for c in codes] + [enter_and_read(c) for c in codes]

    first, second = (container.ContainerCode(locator, {"BEAMRAY_TEST_SETTING": locator}) for locator in archives)
    seen = ray.get(in_turn.remote([first, second, first]))
    # The last three ran in one process, one after the other: each saw only its own project.
    for entry, (locator, word) in zip(seen, [(archives[0], "first"), (archives[1], "second"), (archives[0], "first")] * 2):
        assert entry["word"] == word and entry["file"] == f"{word} file"
        assert entry["cwd"] == entry["first_on_path"] and entry["cwd"].endswith(locator)
        assert entry["executable"] and entry["setting"] == locator


def test_an_unpublished_archive_is_refused_with_a_clear_error(ray_cluster):
    missing = container.ContainerCode("0" * 32)
    with pytest.raises(ray.exceptions.RayTaskError, match="not on this cluster; deploy it again"):
        ray.get(_enter_and_read.remote(missing))
