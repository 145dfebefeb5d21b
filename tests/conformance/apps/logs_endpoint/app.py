# Beam docs › Creating a Web Endpoint, printing what it was asked to say (read back with `beamray logs`).
from beam import endpoint


@endpoint(cpu=0.5, memory=128)
def speak(**inputs):
    for i in range(int(inputs.get("lines", 1))):
        print(f"{inputs['word']} {i}")
    return {"said": inputs["word"]}
