# Beam docs › Container Images › Using a Specific Python Version (unchanged; needs the cluster to run Python 3.11).
from beam import function, Image


# This function will use ubuntu:22.04 with Python 3.11
@function(image=Image(python_version="python3.11"))
def hello_world():
    return "Hello, world!"

hello_world.remote()
