# Beam docs › Running Async Tasks › Programmatically Enqueuing Tasks (app.py); python_packages=["torch"] dropped (not installed, no internet, unused).
from beam import task_queue, Image


@task_queue(
    cpu=1.0,
    memory=128,
    gpu="T4",
    image=Image(),
    keep_warm_seconds=1000,
)
def multiply(x):
    result = x * 2
    return {"result": result}

# Manually insert task into the queue
multiply.put(x=10)
