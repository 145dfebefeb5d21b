# Docs: Hosting a Web Server (the @asgi FastAPI example of Beam's "Web Endpoints" page).
from beam import Image, asgi


@asgi(name="fastapi-server", image=Image().add_python_packages(["fastapi"]), cpu=0.1)
def web_server():
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/hello")
    async def hello():
        return {"hello": "world"}

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, q: str = ""):
        return {"item_id": item_id, "q": q}

    return app
