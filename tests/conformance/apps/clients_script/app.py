# A script on a machine that only reaches the gateway: Beam's client objects (beam.Client, Task, Deployment).
import json
import sys

from beam import Client, Task

token, queue_name, endpoint_name = sys.argv[1:4]
client = Client(token=token)

task = client.submit(queue_name, input={"word": "hello"})
print(json.dumps({"type": type(task).__name__, "status": task.status()}))
result = task.result(wait=True)
print(json.dumps({"result": result, "status": task.status(), "outputs": task.outputs()}))

found = client.get_task_by_id(task.id)
print(json.dumps({"found": found == task, "result": found.result(), "complete": found.is_complete()}))
again = Task(task.id, client.base_url, token)
print(json.dumps({"again": again.status()}))

deployment = client.get_deployment(endpoint_name)
print(json.dumps({"url": deployment.url, "answer": deployment.submit(input={"x": 21})}))
print(json.dumps({"answer": client.submit(f"endpoint/{endpoint_name}", input={"x": 2})}))

events = []
subscribed = client.subscribe(queue_name, input={"word": "again"}, event_handler=events.append)
print(json.dumps({"subscribed": subscribed, "events": [event["status"] for event in events]}))

with open("upload.txt", "w") as f:
    f.write("uploaded through beam.Client")
print(json.dumps({"upload": client.upload_file("upload.txt")}))
