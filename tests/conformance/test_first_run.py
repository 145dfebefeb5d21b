"""A new user's first hour: README command 1 on a fresh machine, hardware the laptop lacks, a second cluster.

These run first in the package (see tests/conftest.py): no cluster, no Ray token, no config exist yet.
"""

from __future__ import annotations

import httpx

from tests.conformance.conftest import User


def test_the_first_command_on_a_fresh_machine_starts_the_cluster_and_runs(user: User) -> None:
    assert not (user.home / ".ray" / "auth_token").exists()
    project = user.project("square_map", folder="first-run")

    result = user.beamray("run", "app.py", cwd=project)

    assert result.stdout.split() == [str(i ** 2) for i in range(10)]
    assert "Traceback" not in result.stderr
    assert (user.home / ".ray" / "auth_token").exists()  # the embedded head's token, made on first use


def test_a_gpu_the_cluster_lacks_is_one_message_with_the_next_step(user: User) -> None:
    project = user.project("gpu_laptop")

    result = user.beamray("run", "app.py", cwd=project, check=False)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Function app:on_t4 asks for" in result.stderr
    assert "accelerator_type:T4" in result.stderr
    assert "beamray cluster down && beamray cluster up --gpu T4" in result.stderr


def test_an_output_link_printed_by_a_script_answers_on_a_cluster_where_nothing_is_deployed(user: User) -> None:
    assert user.beamray("deployment", "list", "--json").stdout.strip() == "[]"
    project = user.project("output_file", folder="output-from-a-script")
    (project / "run.py").write_text("from app import save_output\n\nprint(save_output.remote()['output_url'])\n")

    url = user.beamray("run", "run.py", cwd=project).stdout.strip().splitlines()[-1]

    answer = httpx.get(url, timeout=60)  # a public link: no token
    assert answer.status_code == 200
    assert answer.text == "This is an output, a glorious text file."


def test_a_second_cluster_on_the_machine_never_shares_the_gateway_port(user: User, tmp_path) -> None:
    first = user.deploy(user.project("port_clash_first"), "app.py:handler")
    second_user = User(tmp_path)
    try:
        second = second_user.deploy(second_user.project("port_clash"), "app.py:handler")
        first_gateway, second_gateway = user.config()["gateway_url"], second_user.config()["gateway_url"]

        assert first_gateway != second_gateway
        assert first["url"].startswith(first_gateway) and second["url"].startswith(second_gateway)
        for person, url, expected in ((user, first["url"], "first"), (second_user, second["url"], "second")):
            with person.http() as client:
                answers = {client.post(url, json={}).json()["cluster"] for _ in range(20)}
            assert answers == {expected}  # every request reaches the user's own cluster
    finally:
        second_user.beamray("cluster", "down", check=False)


def test_a_port_the_user_chose_that_is_taken_is_refused_by_name(user: User, tmp_path) -> None:
    taken = httpx.URL(user.config()["gateway_url"]).port
    second_user = User(tmp_path)
    try:
        result = second_user.beamray("deploy", "app.py:handler", cwd=second_user.project("port_clash"),
                                     env={"BEAMRAY_HTTP_PORT": str(taken)}, check=False)
        assert result.returncode == 1
        assert f"port {taken} on 127.0.0.1 is taken" in result.stderr
        assert "BEAMRAY_HTTP_PORT" in result.stderr and "Traceback" not in result.stderr
    finally:
        second_user.beamray("cluster", "down", check=False)
