# Beam docs › Creating a Web Endpoint, called through beam.Client.
from beam import endpoint


@endpoint(cpu=0.5, memory=128)
def multiply(**inputs):
    return {"result": inputs["x"] * 2}
