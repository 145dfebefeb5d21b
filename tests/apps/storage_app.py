"""Unchanged Beam apps using Output and Volume."""

from pathlib import Path

from beamray import Output, Volume, function, task_queue

notes = Volume(name="notes", mount_path="./notes")


@function(cpu=0.1, volumes=[notes])
def write_note(name: str, text: str):
    Path("notes", name).write_text(text)
    return sorted(p.name for p in Path("/volumes/notes").iterdir())


@function(cpu=0.1, volumes=[notes])
def read_note(name: str):
    return Path("notes", name).read_text()


@task_queue(name="report", cpu=0.1)
def report(text: str):
    Path("report.txt").write_text(text)
    output = Output(path="report.txt").save()
    return {"url": output.public_url(expires=60)}
