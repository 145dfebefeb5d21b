# Beam docs › Timeouts and Retries › Max Retries (timeout.py, unchanged).
from beam import task_queue


@task_queue(retries=2, retry_for=[Exception])  # Override default retry logic
def handler():
    raise Exception("Something went wrong, retry please!")
