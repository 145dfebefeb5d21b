"""Sandboxes on Ray: isolated code execution (Beam's ``Sandbox``).

``actor`` (one detached actor per sandbox), ``isolation`` (bubblewrap), ``agent`` (the in-sandbox process
starter), ``processes`` and ``fs`` (the actor's side of ``.process`` / ``.fs``), ``pool`` (warm actors),
``client`` (the caller's side), ``errors`` (Beam's exception names). Importing this package imports no Ray.
"""
