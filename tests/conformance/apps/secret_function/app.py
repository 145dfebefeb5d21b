# Beam docs › Storing Secrets › Using Secrets (unchanged; deployed and invoked over HTTP, since the docs show no caller).
from beam import function


@function(secrets=["AWS_ACCESS_KEY"])
def handler():
    import os

    my_secret = os.environ["AWS_ACCESS_KEY"]
    print(f"Secret: {my_secret}")
