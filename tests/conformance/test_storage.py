"""Beam's ``Output`` examples (docs: Ephemeral Files and Images): saved files, directories and PIL images
behind public URLs that anyone can GET without a token."""

from __future__ import annotations

import ast
import io
import zipfile
from urllib.parse import urlsplit

import httpx
from PIL import Image

from tests.conformance.support import enqueue, finished, run_program


def fetch(url: str) -> httpx.Response:
    """A public Output URL, fetched as a browser would: no Authorization header."""
    response = httpx.get(url, timeout=60)
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    return response


def test_saved_file_is_served_at_its_public_url(user):
    project = user.project("output_file")
    deployment = user.deploy(project, "app.py:save_output")
    done = finished(user, enqueue(user, deployment["url"]))
    url = done["result"]["output_url"]
    assert urlsplit(url).path.startswith("/output/id/")
    assert fetch(url).text == "This is an output, a glorious text file."


def test_directory_output_is_a_zip_of_its_files(user):
    (url,) = run_program(user, "output_directory")
    assert urlsplit(url).path.startswith("/output/id/")  # "Returns https://app.beam.cloud/output/id/…"
    archive = zipfile.ZipFile(io.BytesIO(fetch(url).content))
    assert sorted(archive.namelist()) == ["left.txt", "right.txt"]
    assert archive.read("left.txt") == b"left channel"


def test_pil_image_output_is_the_100px_white_png(user):
    (printed,) = run_program(user, "output_pil")
    url = ast.literal_eval(printed)["image"]
    assert urlsplit(url).path.startswith("/output/id/")
    image = Image.open(io.BytesIO(fetch(url).content))
    assert (image.format, image.size) == ("PNG", (100, 100))
    assert image.convert("RGB").getpixel((50, 50)) == (255, 255, 255)
