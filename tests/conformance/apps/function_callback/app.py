# Beam docs › Task Callbacks › Registering a Callback URL (unchanged; the test points https://your-server.io at a local receiver).
from beam import function


@function(callback_url="https://your-server.io")
def handler(x):
    return {"result": x}

if __name__ == "__main__":
    handler.remote(x=10)
