# Docs: Creating a Web Endpoint (multiply), kept across cluster restarts.
from beam import endpoint


@endpoint(name="restart-web", cpu=0.1)
def multiply(**inputs):
    result = inputs["x"] * 2
    return {"result": result}
