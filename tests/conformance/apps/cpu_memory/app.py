# Beam docs › CPU and RAM › Configuring CPU and Memory (unchanged; deployed and invoked over HTTP, since the docs show no caller).
from beam import function

@function(cpu=2, memory="2Gi")
def some_function():
    pass
