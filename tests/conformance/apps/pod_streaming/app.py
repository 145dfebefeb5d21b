from beam import Pod

streamer = Pod(
    name="streamer",
    cpu=0.5,
    ports=[8080],
    authorized=True,
    entrypoint=["python", "server.py"],
)
