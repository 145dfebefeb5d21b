# Docs: Creating a Web Endpoint (multiply), deployed twice with v1 stopped before a cluster restart.
from beam import endpoint


@endpoint(name="restart-versions", cpu=0.1)
def multiply(**inputs):
    result = inputs["x"] * 2
    return {"result": result}
