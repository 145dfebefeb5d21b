"""``beamray volume list|create|delete``, ``ls``, ``cp``, ``rm``, ``mv``: Beam's volume commands.

Remote paths are ``beam://VOLUME/path`` (``beamray://`` works too); ``ls`` and ``rm`` also take Beam's
bare ``VOLUME/path``. The commands work on the storage backend directly (``BEAMRAY_STORAGE_URL``), so
files copied in are what tasks see at ``/volumes/VOLUME``.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import click

from beamray import storage
from beamray import volumes
from beamray.cli.common import beamray_errors, print_json, say
from beamray.cli.common import humanize_age, render_table

SCHEMES = ("beam://", "beamray://")


@dataclass(frozen=True)
class RemotePath:
    volume: str
    path: str  # inside the volume, "" for its root
    trailing_slash: bool = False

    def __str__(self) -> str:
        return f"beam://{self.volume}/{self.path}"


def parse_remote(text: str, require_scheme: bool = False) -> RemotePath | None:
    """``beam://vol/a/b`` (or, unless ``require_scheme``, ``vol/a/b``) → RemotePath; a local path → None."""
    for scheme in SCHEMES:
        if text.startswith(scheme):
            text = text[len(scheme):]
            break
    else:
        if require_scheme:
            return None
    volume, _, rest = text.partition("/")
    if not volume:
        raise click.BadParameter(f"{text!r} names no volume; use beam://VOLUME/path")
    volumes.validate_volume_name(volume)
    parts = [part for part in rest.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise click.BadParameter(f"{text!r}: '.' and '..' are not allowed in volume paths")
    return RemotePath(volume, "/".join(parts), text.endswith("/"))


def _key(remote: RemotePath, path: str = "") -> str:
    return "/".join(part for part in (volumes.data_prefix(remote.volume), remote.path, path) if part)


def _require(volume: str, store: storage.Storage) -> None:
    if volumes.get_volume(volume, store) is None:
        raise click.ClickException(f"Volume '{volume}' not found. Create it with `beamray volume create {volume}`.")


def humanize_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return f"{size} B"  # unreachable


def format_option(func):  # type: ignore[no-untyped-def]
    func = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(func)
    return click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                        show_default=True, help="Output format.")(func)


def _volume_rows(records: list[volumes.VolumeRecord]) -> list[tuple[str, ...]]:
    now = time.time()
    return [(r.name, humanize_age(r.created_at, now), humanize_age(r.updated_at, now)) for r in records]


@click.group("volume")
def volume() -> None:
    """Manage volumes."""


@volume.command("list")
@format_option
@beamray_errors
def list_(fmt: str, as_json: bool) -> None:
    """List available volumes."""
    records = volumes.list_volumes()
    if as_json or fmt == "json":
        print_json([asdict(r) for r in records])
        return
    click.echo(render_table(("Name", "Created At", "Updated At"), _volume_rows(records)))
    click.echo()
    click.echo(f"  {len(records)} volume{'' if len(records) == 1 else 's'}")


@volume.command("create")
@click.argument("name")
@format_option
@beamray_errors
def create(name: str, fmt: str, as_json: bool) -> None:
    """Create a new volume (nothing changes when it exists)."""
    record, _created = volumes.get_or_create_volume(name)
    if as_json or fmt == "json":
        print_json(record)
        return
    click.echo(render_table(("Name", "Created At", "Updated At"), _volume_rows([record])))


@volume.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Delete without prompting.")
@format_option
@beamray_errors
def delete(name: str, yes: bool, fmt: str, as_json: bool) -> None:
    """Delete a volume and every file in it."""
    if volumes.get_volume(name) is None:
        raise click.ClickException(f"Volume '{name}' not found.")
    if not yes:
        click.echo("Any apps (functions, endpoints, taskqueue, etc) that\n"
                   "refer to this volume should be updated before it is deleted.")
        if click.prompt("Are you sure? (y/n)", default="n", show_default=False).strip().lower() not in ("y", "yes"):
            return
    removed = volumes.delete_volume(name)
    if as_json or fmt == "json":
        print_json({"name": name, "deleted_files": removed})
        return
    say(f"Deleted volume {name}")


@click.command("ls")
@click.argument("remote_path")
@format_option
@beamray_errors
def ls(remote_path: str, fmt: str, as_json: bool) -> None:
    """List contents in a volume: VOLUME[/path] (Unix wildcards allowed in the last part)."""
    remote = parse_remote(remote_path)
    assert remote is not None
    store = storage.get_storage()
    _require(remote.volume, store)
    pattern = None
    if any(ch in remote.path for ch in "*?["):
        parent, _, pattern = remote.path.rpartition("/")
        remote = RemotePath(remote.volume, parent)
    key = _key(remote)
    if store.exists(key):  # a file
        info = store.stat(key)
        entries = [storage.Entry(PurePosixPath(remote.path).name, False, info.size, info.mtime)]  # type: ignore[union-attr]
    else:
        if remote.path and not store.is_dir(key):
            raise click.ClickException(f"{remote_path} (no such file or directory)")
        entries = store.list_dir(key)
    if pattern is not None:
        entries = [entry for entry in entries if fnmatch.fnmatchcase(entry.name, pattern)]
    if as_json or fmt == "json":
        print_json([asdict(entry) for entry in entries])
        return
    now = time.time()
    rows = [(entry.name + ("/" if entry.is_dir else ""), "" if entry.is_dir else humanize_size(entry.size),
             humanize_age(entry.mtime, now) if entry.mtime else "", "Yes" if entry.is_dir else "No")
            for entry in entries]
    click.echo(render_table(("Name", "Size", "Modified Time", "IsDir"), rows))
    click.echo()
    used = sum(entry.size for entry in entries)
    click.echo(f"  {len(entries)} item{'' if len(entries) == 1 else 's'} | {humanize_size(used)} used")


def _plan_upload(source: str, remote: RemotePath, store: storage.Storage) -> list[tuple[Path, str]]:
    """(local file, key) pairs, following Beam's ``cp`` rules for files, directories and trailing slashes."""
    matches = sorted(glob.glob(source, recursive=True)) if any(ch in source for ch in "*?[") else [source]
    matches = [match for match in matches if os.path.exists(match)]
    if not matches:
        raise click.ClickException(f"Could not find files to upload: {source}")
    many = len(matches) > 1
    plan: list[tuple[Path, str]] = []
    for match in matches:
        path = Path(match)
        if path.is_dir():
            name = path.resolve().name if match.rstrip("/") not in (".", "") else ""
            base = remote.path
            if (remote.trailing_slash or many) and name:
                base = "/".join(part for part in (base, name) if part)
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                plan.append((file, _key(RemotePath(remote.volume, base), file.relative_to(path).as_posix())))
            continue
        target = remote.path
        if not target or remote.trailing_slash or many or store.is_dir(_key(remote)):
            target = "/".join(part for part in (target, path.name) if part)
        elif not PurePosixPath(target).suffix and path.suffix:
            target += path.suffix  # Beam: `cp file.txt beam://vol/hello` gives hello.txt
        plan.append((path, _key(RemotePath(remote.volume, target))))
    return plan


def _plan_download(remote: RemotePath, destination: str, store: storage.Storage) -> list[tuple[str, Path]]:
    key = _key(remote)
    dest = Path(destination)
    if remote.path and store.exists(key):
        name = PurePosixPath(remote.path).name
        return [(key, dest / name if dest.is_dir() or destination.endswith("/") else dest)]
    if remote.path and not store.is_dir(key):
        raise click.ClickException(f"{remote} (no such file or directory)")
    base = dest / PurePosixPath(remote.path).name if remote.trailing_slash and remote.path else dest
    plan = []
    for info in store.list(key):
        try:
            plan.append((info.key, storage.local_path_under(base, info.key[len(key) + 1:])))
        except ValueError as exc:  # e.g. "vol//etc/x": it must not land outside the destination
            click.echo(f"  skipped: {exc}", err=True)
    return plan


@click.command("cp")
@click.argument("source")
@click.argument("destination")
@click.option("--multipart/--no-multipart", "use_multipart", default=None,
              help="Accepted for Beam compatibility; transfers are always whole-file.")
@beamray_errors
def cp(source: str, destination: str, use_multipart: bool | None) -> None:
    """Upload or download contents to or from a volume (remote paths: beam://VOLUME/path)."""
    src, dst = parse_remote(source, require_scheme=True), parse_remote(destination, require_scheme=True)
    if src is None and dst is None:
        raise click.ClickException("Source and destination cannot both be local paths.")
    if src is not None and dst is not None:
        raise click.ClickException("Source and destination cannot both be remote paths.")
    store = storage.get_storage()
    prefix_len = len(volumes.data_prefix((src or dst).volume)) + 1  # type: ignore[union-attr]
    total = 0
    if dst is not None:
        _require(dst.volume, store)
        plan = _plan_upload(source, dst, store)
        say(f"{destination} (copying {len(plan)} object{'' if len(plan) == 1 else 's'})")
        for path, key in plan:
            info = store.upload(key, path)
            total += info.size
            click.echo(f"  {path} → beam://{dst.volume}/{key[prefix_len:]} ({humanize_size(info.size)})")
    else:
        assert src is not None
        _require(src.volume, store)
        plan_down = _plan_download(src, destination, store)
        if not plan_down:
            raise click.ClickException(f"{source} is empty")
        say(f"{source} (copying {len(plan_down)} object{'' if len(plan_down) == 1 else 's'})")
        for key, path in plan_down:
            store.download(key, path)
            size = path.stat().st_size
            total += size
            click.echo(f"  beam://{src.volume}/{key[prefix_len:]} → {path} ({humanize_size(size)})")
    say(f"Copied {humanize_size(total)}")


@click.command("rm")
@click.argument("remote_path")
@beamray_errors
def rm(remote_path: str) -> None:
    """Remove content from a volume: VOLUME/path (a file, a directory, or a wildcard pattern)."""
    remote = parse_remote(remote_path)
    assert remote is not None
    if not remote.path:
        raise click.ClickException("Refusing to remove a whole volume; use `beamray volume delete NAME`.")
    store = storage.get_storage()
    _require(remote.volume, store)
    root = volumes.data_prefix(remote.volume)
    if any(ch in remote.path for ch in "*?["):
        keys = [info.key for info in store.list(root) if fnmatch.fnmatchcase(info.key[len(root) + 1:], remote.path)]
    else:
        keys = [info.key for info in store.list(_key(remote))] or ([_key(remote)] if store.exists(_key(remote)) else [])
    for key in keys:
        store.delete(key)
    say(f"{remote_path} ({len(keys)} object{'' if len(keys) == 1 else 's'} deleted)")
    for key in keys:
        click.echo(key[len(root) + 1:])


@click.command("mv")
@click.argument("original_path")
@click.argument("new_path")
@beamray_errors
def mv(original_path: str, new_path: str) -> None:
    """Move a file or directory to a new location within the same volume."""
    old, new = parse_remote(original_path), parse_remote(new_path)
    assert old is not None and new is not None
    if old.volume != new.volume:
        raise click.ClickException("mv works within one volume; use cp across volumes.")
    store = storage.get_storage()
    _require(old.volume, store)
    old_key, new_key = _key(old), _key(new)
    moves = [(old_key, new_key)] if store.exists(old_key) else [
        (info.key, new_key + info.key[len(old_key):]) for info in store.list(old_key)]
    if not moves or not old.path:
        raise click.ClickException(f"Failed to move {original_path} to {new_path} (no such file or directory)")
    with tempfile.TemporaryDirectory(prefix="beamray-mv-") as scratch:
        for source_key, target_key in moves:
            tmp = Path(scratch) / "file"
            store.download(source_key, tmp)
            store.upload(target_key, tmp)
            store.delete(source_key)
    say(f"Moved {original_path} to {new_path}")


COMMANDS = [volume, ls, cp, rm, mv]
