# Docs: Endpoints (the quickstart endpoint), deployed by the first user of the machine.
from beam import endpoint


@endpoint(name="clash", cpu=0.1)
def handler(**inputs):
    return {"cluster": "first"}
