# Beam docs › Task Callbacks › Request Level Callbacks (unchanged: both handlers, the second replaces the first).
from beam import endpoint


@endpoint()
def handler(callback_url): # Make sure to pass this value!
    return {"response": "true"}

@endpoint()
def handler(**inputs): # You can use kwargs too
    return {"response": "true"}
