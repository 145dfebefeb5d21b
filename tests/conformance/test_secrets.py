"""Beam's "Storing Secrets": the ``secret`` CLI lines of the docs, and a secret reaching a function and an
endpoint's ``on_start`` as an environment variable."""

from __future__ import annotations

import pytest

from tests.conformance.support import deployed, enqueue, finished, gateway

KEY, VALUE = "AWS_ACCESS_KEY", "ASIAY34FZKBOKMUTVV7A"  # the docs' example


def said(user, *args: str) -> str:
    return user.beamray("secret", *args).stdout.strip()


def test_secret_cli_prints_the_docs_lines(user):
    assert said(user, "create", KEY, VALUE) == f"=> Created secret with name: '{KEY}'"
    try:
        table = said(user, "list").splitlines()
        assert table[0].split() == ["Name", "Last", "Updated", "Created"]
        assert any(line.split()[:1] == [KEY] for line in table[2:])
        assert said(user, "show", KEY) == f"=> Secret '{KEY}': {VALUE}"
        assert said(user, "modify", KEY, VALUE) == f"=> Modified secret '{KEY}'"
    finally:
        assert said(user, "delete", KEY) == f"=> Deleted secret '{KEY}'"
    assert user.beamray("secret", "show", KEY, check=False).returncode != 0


@pytest.fixture(scope="module")
def aws_access_key(user):
    """The docs' secret, created as ``beam secret create AWS_ACCESS_KEY ASIAY34FZKBOKMUTVV7A``."""
    user.beamray("secret", "create", KEY, VALUE)
    yield
    user.beamray("secret", "delete", KEY, check=False)


def test_function_reads_the_secret_from_its_environment(user, aws_access_key):
    # os.environ["AWS_ACCESS_KEY"] raises KeyError, and the task fails, unless the secret is injected.
    project = user.project("secret_function")
    deployment = user.deploy(project, "app.py:handler", "--name", "secret-function")
    finished(user, enqueue(user, deployment["url"]))


def test_on_start_reads_the_secret(user, aws_access_key):
    # load_models reads os.environ["AWS_ACCESS_KEY"] as the container starts: without it the deploy fails.
    project = user.project("secret_on_start")
    with deployed(user, project, "app.py:handler", "--name", "secret-on-start") as deployment:
        response = gateway(user).post(deployment["url"], json={})
        assert (response.status_code, response.json()) == (200, {})
