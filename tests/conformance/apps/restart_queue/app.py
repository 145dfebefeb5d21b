# Docs: Running Async Tasks / Creating a Task Queue, with a short sleep so tasks are still queued at a restart.
import time

from beam import task_queue


@task_queue(name="restart-queue", cpu=0.1, retries=3)
def handler(**inputs):
    time.sleep(inputs.get("seconds", 0))
    return {"doubled": inputs["x"] * 2}
