# Beam docs › Core Concepts › Endpoints (unchanged).
from beam import endpoint

@endpoint(name="quickstart")
def handler():
  return {}
