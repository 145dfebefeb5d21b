# Beam docs › Container Images › Importing requirements.txt (unchanged; the docs show no requirements.txt, this one asks for numpy, installed here).
from beam import Image, endpoint

image = Image(python_version="python3.11", python_packages="requirements.txt")

@endpoint(image=image)
def handler():
  return {}
