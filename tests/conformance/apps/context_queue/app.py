# Beam docs › Runtime Variables › Using a Runtime Variable (unchanged).
from beam import task_queue

@task_queue()
def handler(context):
    task_id = context.task_id
    return {}
