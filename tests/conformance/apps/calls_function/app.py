# Beam docs › Functions › Running Functions Remotely, called from an endpoint: the handler's .remote()
# runs the function in a container of its own, with the same project's files and modules. The test
# deploys two copies of this project, each with its own helpers.py and word.txt.
from beam import endpoint, function

from helpers import WORD


@function(cpu=0.1)
def shout(text):
    with open("word.txt") as f:  # the container's working directory is the project
        return f"{WORD}:{f.read().strip()}:{text}"


@endpoint(name="calls", cpu=0.1)
def handler(text: str = "hi"):
    return {"said": shout.remote(text)}
