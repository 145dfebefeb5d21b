"""``beamray k8s render FILE.py`` (the RayCluster an app needs) and ``beamray k8s validate [PATHS…]``."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from beamray.cli.common import beamray_errors, say
from beamray.cli.loading import split_target
from beamray.code import module_root_and_name

DEFAULT_BASE = "k8s/kuberay/overlays/eks-gpu"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUMMARY = re.compile(r"(\d+) documents: (\d+) valid, (\d+) invalid, (\d+) unchecked")
INVALID_LINE = re.compile(r"INVALID\s+(?P<where>.+?): doc (?P<doc>\S+?)(?: (?P<ident>[^\s:]+/[^\s:]*))?: ")


def collect(namespace: dict[str, Any]) -> list[Any]:
    """Every decorated Beam object in a module's namespace, in definition order, as ``AppRequest``s."""
    from beamray.adapters.handle import Handle
    from beamray.k8s import AppRequest

    requests, seen = [], set()
    for value in list(namespace.values()):
        if not isinstance(value, Handle) or id(value) in seen:
            continue
        seen.add(id(value))
        spec = value.deploy_spec()
        image = spec.runtime.image
        requests.append(AppRequest(handler=spec.handler, kind=type(value.parent).__name__, resources=spec.resources,
                                   base_image=image.base_image or None, dockerfile=bool(image.dockerfile)))
    return requests


@click.group("k8s")
def k8s_group() -> None:
    """Kubernetes manifests (KubeRay v1.7) for beamray apps."""


def _load_app(target: str) -> list[Any]:
    """The app's decorated Beam objects as ``AppRequest``s; TARGET is FILE.py or FILE.py:HANDLER."""
    from beamray import drop_in

    if ":" in target:
        file, attribute = split_target(target)
    else:
        file, attribute = target, None
        if not file.endswith(".py") or not os.path.isfile(file):
            raise click.BadParameter(f"{target!r} is not an existing FILE.py (or FILE.py:HANDLER)", param_hint="APP")
    root, module_name = module_root_and_name(file)
    drop_in.install()
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: report it as a CLI error, not a traceback
        raise click.ClickException(f"importing {file} failed: {type(exc).__name__}: {exc}") from exc
    if attribute is not None and not hasattr(module, attribute):
        raise click.BadParameter(f"{file} has no attribute {attribute!r}", param_hint="APP")
    namespace = {attribute: getattr(module, attribute)} if attribute else vars(module)
    requests = collect(namespace)
    if attribute and not requests:
        raise click.BadParameter(f"{target} is not a decorated Beam object (@function, @schedule, @endpoint, "
                                 "@asgi, @realtime, @task_queue)", param_hint="APP")
    return requests


def _existing_dir(path: str) -> Path:
    """PATH as given, else relative to the repository root (the default overlay works from anywhere)."""
    from beamray.k8s import REPO_ROOT

    given = Path(path)
    for candidate in (given, REPO_ROOT / given):
        if candidate.is_dir():
            return candidate
    raise click.BadParameter(f"{path} is not a directory (looked in the working directory and {REPO_ROOT})",
                             param_hint="--base")


@k8s_group.command("render")
@click.argument("app", metavar="FILE.py[:HANDLER]")
@click.option("--gpus", default="", metavar="A10G,H100,…", help="Extra GPU types to give worker groups.")
@click.option("--name", help="RayCluster name (default: the overlay's, beamray).")
@click.option("--base", default=DEFAULT_BASE, show_default=True,
              help="kustomize overlay providing head, Redis, gateway.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the YAML here instead of stdout.")
@beamray_errors
def render(app: str, gpus: str, name: str | None, base: str, output: str | None) -> None:
    """Print the RayCluster (and the overlay's other documents) that APP's decorated objects need."""
    from beamray.k8s import render_app

    requests = _load_app(app)
    extra = [g.strip() for g in gpus.split(",") if g.strip()]
    result = render_app(requests, _existing_dir(base), extra, name=name, source=app, base_label=base)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if output is None:
        click.echo(result.text, nl=False)
        return
    Path(output).write_text(result.text, encoding="utf-8")
    cluster = next(d for d in result.docs if d["kind"] == "RayCluster")["metadata"]["name"]
    say(f"Wrote {output}: RayCluster {cluster}, worker groups {', '.join(p.name for p in result.plans)}")


def _validator(schemas: str | None) -> Any:
    from beamray.k8s import REPO_ROOT

    directory = Path(schemas) if schemas else REPO_ROOT.parent / "shared" / "kuberay-schemas"
    path = directory / "validate.py"
    if not path.is_file():
        raise click.ClickException(f"KubeRay validator not found at {path}: put shared/kuberay-schemas beside the "
                                   "repository root, or pass --schemas DIR (the folder holding validate.py)")
    spec = importlib.util.spec_from_file_location("beamray_kuberay_validate", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise click.ClickException(f"{path} needs PyYAML and jsonschema ({exc}): pip install jsonschema") from exc
    return module


def _default_targets() -> list[Path]:
    from beamray.k8s import KUBERAY_DIR

    overlays = sorted(p for p in (KUBERAY_DIR / "overlays").glob("*") if _is_kustomization(p))
    return [KUBERAY_DIR / "base", *overlays]


def _is_kustomization(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in KUSTOMIZATION_FILES)


def _invalid_document(match: re.Match) -> str:
    """``file: doc N Kind/name`` from one of validate.py's INVALID lines (without the line number)."""
    where = re.sub(r":\d+$", "", match["where"])
    return f"{where}: doc {match['doc']}" + (f" {match['ident']}" if match["ident"] else "")


@k8s_group.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--schemas", type=click.Path(file_okay=False), envvar="BEAMRAY_KUBERAY_SCHEMAS",
              help="Folder with validate.py and the schemas (default: shared/kuberay-schemas beside the repo).")
@click.option("-v", "--verbose", is_flag=True, help="Also list valid and unchecked documents.")
def validate(paths: tuple[str, ...], schemas: str | None, verbose: bool) -> None:
    """Check manifests with the offline KubeRay v1.7 validator; exit 1 if any document is invalid.

    PATHS are YAML files, folders of YAML, or kustomize overlays (rendered with k8s/kuberay/render.py).
    Default: k8s/kuberay/base and every overlay in k8s/kuberay/overlays.
    """
    from beamray.k8s import find_renderer, load_renderer

    validator = _validator(schemas)
    targets = [Path(p) for p in paths] or _default_targets()
    invalid: list[str] = []
    with tempfile.TemporaryDirectory(prefix="beamray-k8s-") as tmp:
        for number, target in enumerate(targets):
            label, check = str(target), target
            if _is_kustomization(target):
                try:
                    renderer = load_renderer(find_renderer(target))
                    text = renderer.dump(renderer.render(target))
                except Exception as exc:  # ManifestError, render.py's RenderError, YAML or I/O errors
                    say(f"Checking {label}")
                    click.echo(f"INVALID   {label}: cannot render: {exc}")
                    invalid.append(f"{label}: cannot render")
                    continue
                check = Path(tmp) / f"{number}-{target.resolve().name}.yaml"
                check.write_text(text, encoding="utf-8")
                label = f"{target} (rendered)"
            say(f"Checking {label}")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    rc = validator.main([str(check)] + (["-v"] if verbose else ["-q"]))
                except SystemExit as exc:  # argparse usage errors
                    rc = exc.code if isinstance(exc.code, int) else 2
            text = out.getvalue().replace(str(check), label)
            click.echo(text, nl=False)
            found = [m for m in map(INVALID_LINE.match, text.splitlines()) if m]
            invalid += sorted({_invalid_document(m) for m in found})
            counts = SUMMARY.search(text)
            if rc != 0 and not found:
                invalid.append(f"{label}: {'no documents' if counts and counts[1] == '0' else 'validator failed'}")
    if invalid:
        say(f"{len(invalid)} invalid:")
        for entry in invalid:
            click.echo(f"  {entry}")
        raise click.exceptions.Exit(1)
    say(f"All valid ({len(targets)} input{'s' if len(targets) != 1 else ''})")


COMMANDS = [k8s_group]
