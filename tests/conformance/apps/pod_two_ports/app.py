from beam import Pod

# Two servers in one container, as the docs' "Exposing Ports" pod (Jupyter on 8888, an app on 3000).
pod = Pod(
    name="two-ports",
    cpu=0.5,
    ports=[8888, 3000],
    entrypoint=["sh", "-c", "mkdir -p a b && echo notebook > a/which.txt && echo webapp > b/which.txt && "
                "(cd a && python -m http.server 8888 &) && cd b && exec python -m http.server 3000"],
)
