# Beam docs › Send Events Between Apps › App 2: Inference App; the transformers/torch image is dropped (not installed, unused: the "model" is a lambda) and a `loads` counter is added to the response so the test can see load_latest_model run.
from beam import endpoint, Volume, experimental, Image

VOLUME_NAME = "brand_classifier"
CACHE_PATH = f"./{VOLUME_NAME}-cache"
loads = 0


def load_latest_model():
    # Preload and return the model and tokenizer
    global model, tokenizer, loads
    print("Loading latest...")
    model = lambda x: x + 1  # This is just example code
    loads += 1

    s.clear()  # Clear the signal so it doesn't fire again


# Set a signal handler - when invoked, it will run the handler function
s = experimental.Signal(
    name="reload-model",
    handler=load_latest_model,
)


@endpoint(
    name="inference",
    volumes=[Volume(name=VOLUME_NAME, mount_path=CACHE_PATH)],
    image=Image(),
    on_start=load_latest_model,
)
def predict(**inputs):
    global model, tokenizer  # These will have the latest values

    return {"success": "true", "loads": loads}
