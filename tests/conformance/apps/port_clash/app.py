# Docs: Endpoints (the quickstart endpoint), deployed by a second user of the same machine.
from beam import endpoint


@endpoint(name="clash", cpu=0.1)
def handler(**inputs):
    return {"cluster": "second"}
