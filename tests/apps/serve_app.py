"""A Beam endpoint for ``beamray serve`` tests: it prints in the handler; tests edit RESULT to check reload."""

from beamray import endpoint

RESULT = "first"


@endpoint(name="greeter", cpu=0.1)
def greet(who: str = "world"):
    print(f"greeter handling who={who}")
    return {"greeting": f"hello {who}", "result": RESULT}


def helper():
    return "not a web object"
