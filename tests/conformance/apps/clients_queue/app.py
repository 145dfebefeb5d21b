# Beam docs › Running Async Tasks (a task queue that saves an Output), called through beam.Client.
from beam import task_queue, Output


@task_queue(cpu=0.5, memory=128)
def shout(word: str = "beam"):
    with open("shout.txt", "w") as f:
        f.write(word.upper())
    Output(path="shout.txt").save()
    return {"shout": word.upper()}
