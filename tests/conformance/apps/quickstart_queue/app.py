# Beam docs › Core Concepts › Task Queues (unchanged).
from beam import task_queue

@task_queue(name="quickstart")
def handler():
  print(48393 * 39383)
