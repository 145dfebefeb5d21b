import json
import os
import urllib.error
import urllib.request


def reach(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except urllib.error.HTTPError as answer:  # it was reached: it answered with an error status
        return f"status {answer.code}"
    except OSError as exc:
        return f"unreachable: {type(exc).__name__}"


# TARGET_URL: a server outside the pod; NODE_LOOPBACK_URL: the node's own 127.0.0.1 service, seen from
# the pod through slirp4netns's host address (it must stay out of reach).
with open("reached.json", "w") as out:
    json.dump({name: reach(os.environ[name]) for name in ("TARGET_URL", "NODE_LOOPBACK_URL")}, out)
