import urllib.request

from beam import Pod

# The docs' "Launching Cloud Containers" flow with a plain Python image: create, wait, use, terminate.
pod = Pod(cpu=0.5, ports=[8000], entrypoint=["python", "-m", "http.server", "8000"],
          env={"GREETING": "hello"})

instance = pod.create()
print("ok:", instance.ok, instance.error_msg)
print("container:", instance.container_id)
print("✨ Container hosted at:", instance.url)
print("ready:", instance.wait())
with urllib.request.urlopen(instance.url + "/") as response:
    print("status:", response.status, "listing app.py:", b"app.py" in response.read())
print("state:", instance.status())
print("terminated:", instance.terminate())
print("after:", instance.status())
