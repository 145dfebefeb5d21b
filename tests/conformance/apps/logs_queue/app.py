# Beam docs › Running Async Tasks, each task printing its word (read back with `beamray logs --task-id`).
from beam import task_queue


@task_queue(cpu=0.5, memory=128)
def speak(word: str):
    print(f"task says {word}")
    return {"said": word}
