# Beam docs › Realtime and Streaming › Deploying a Realtime App (app.py, unchanged).
from beam import realtime


@realtime(
    cpu=1,
    memory="1Gi",
    concurrent_requests=10, # Process 10 requests at a time
    authorized=False, # Don't require auth to invoke
)
def stream(event):
    # Echo back the event payload sent to the websocket
    return {"response": event}
