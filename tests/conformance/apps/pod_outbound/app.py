from beam import Pod

# A pod that downloads at start, as entrypoints running `pip install` or fetching weights do: fetch.py
# saves what it reached (and what it could not) next to itself, then the folder is served on port 8000.
pod = Pod(
    name="outbound-pod",
    cpu=1,
    memory="512Mi",
    ports=[8000],
    entrypoint=["sh", "-c", "python fetch.py && python -m http.server 8000"],
)
