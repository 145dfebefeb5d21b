from beam import Pod

crasher = Pod(
    cpu=0.5,
    ports=[8000],
    entrypoint=["python", "-c", "import sys; print('starting up'); print('fatal: no model found', file=sys.stderr); sys.exit(1)"],
)

if __name__ == "__main__":
    instance = crasher.create()
    print("ok:", instance.ok)
    print("ready:", instance.wait(timeout=30))
    state = instance.status()
    print("status:", state, "exit code:", state.exit_code)
    print("tail:", state.output_tail.replace("\n", " | "))
