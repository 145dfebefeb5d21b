# Beam docs › Pre-Loading Models › Using Loaders with Multiple Workers: the Tip has no code, so this is the docs' on_start example on a task queue with workers=2, each task reporting which worker process ran it.
import os
import time

from beam import task_queue


def download_models():
    # Do something that only needs to happen once
    return {"loaded_by": os.getpid()}


# The on_start function runs once for each worker that starts up
@task_queue(workers=2, on_start=download_models)
def handler(context):
    time.sleep(1)  # long enough for the second task to reach the other worker
    return {"on_start_value": context.on_start_value, "pid": os.getpid()}
