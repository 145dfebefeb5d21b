"""Beam's ``@function`` examples as a user runs them: ``beamray run app.py`` and the lines it prints.

Docs: Core Concepts › Functions, Running Functions Remotely, Parallelizing Functions, Queues, Task
Callbacks, Remote vs. Local Environment, CPU and RAM, Container Images.
"""

from __future__ import annotations

import ast
import json

from tests.conformance.support import (
    CallbackReceiver, check_callback, enqueue, finished, point_at, program_lines, run_program,
)


def test_core_concepts_function_runs_locally_and_remotely(user):
    # handler.local() and handler.remote() both return {} and print nothing; a failure would exit non-zero.
    assert run_program(user, "core_function") == []


def test_passing_function_args_prints_hello_world(user):
    assert run_program(user, "greet") == ["Hello World"]


def test_map_fans_out_one_call_per_number(user):
    printed = run_program(user, "square_map")
    assert sorted(int(line) for line in printed) == [i**2 for i in range(10)]  # Beam yields in completion order


def test_map_spreads_tuples_as_multiple_arguments(user):
    printed = run_program(user, "count_primes")
    assert sorted(int(line) for line in printed) == [2, 4, 4]  # primes in [0,10), [10,20), [20,30)


def test_queue_value_put_remotely_is_popped_locally(user):
    assert run_program(user, "simple_queue") == ["beam me up"]  # "The output will be `beam me up`."


def test_task_timeouts_of_a_day_and_none_still_return(user):
    assert [ast.literal_eval(line) for line in run_program(user, "task_timeouts")] == [
        {"hello world"}, {"message": "hello world"}]


def test_headless_function_runs_to_its_result(user):
    printed = run_program(user, "headless")
    assert [ast.literal_eval(line) for line in printed] == [{"message": "This is running in the background"}]


def test_function_callback_posts_the_signed_result(user):
    project = user.project("function_callback")
    with CallbackReceiver() as receiver:
        point_at(project, "https://your-server.io", receiver.url)
        result = user.beamray("run", "app.py", cwd=project)
        assert program_lines(result.stdout) == []
        request = receiver.first()
    assert request["path"] == "/beam-callback"
    assert json.loads(request["body"]) == {"data": {"result": 10}}  # "Callback format › Data Payload"
    check_callback(user, request, "COMPLETE")
    assert len(receiver.requests) == 1


def test_env_is_remote_is_true_only_in_the_container(user):
    assert run_program(user, "is_remote") == ["True False"]


def test_cpu_and_memory_settings_run(user):
    project = user.project("cpu_memory")
    deployment = user.deploy(project, "app.py:some_function")  # cpu=2, memory="2Gi"
    assert (deployment["name"], deployment["kind"]) == ("some_function", "function")
    finished(user, enqueue(user, deployment["url"]))


def test_default_image_runs_the_function(user):
    assert run_program(user, "image_default") == []


def test_python_version_image_runs_the_function(user):
    # Image(python_version="python3.11"): beamray refuses a version the cluster does not run (ImageBuildError).
    assert run_program(user, "image_python_version") == []


def test_distributed_map_holds_what_remote_functions_wrote(user):
    assert run_program(user, "distributed_map") == ["3 5", "['ada', 'grace']", "1"]
