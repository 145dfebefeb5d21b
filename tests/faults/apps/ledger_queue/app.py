# A Beam task queue whose handler leaves one line per run in a ledger folder, so a test can count how
# often each task really ran (its side effects), whatever the task API says.
import os
import time

from beam import QueueDepthAutoscaler, task_queue


@task_queue(name="ledger", cpu=0.2, retries=3, timeout=300, max_pending_tasks=1000,
            autoscaler=QueueDepthAutoscaler(max_containers=8, tasks_per_container=1))
def record(n: int, seconds: float, ledger: str, context=None):
    time.sleep(seconds)
    with open(os.path.join(ledger, context.task_id), "a") as runs:
        runs.write(f"{n}\n")
    return {"n": n}
