#!/usr/bin/env python3
"""Render a kustomize overlay without the kustomize binary (only PyYAML needed).

    python k8s/kuberay/render.py k8s/kuberay/overlays/eks-gpu        # multi-document YAML on stdout
    python k8s/kuberay/render.py --out DIR k8s/kuberay/overlays/*     # DIR/<overlay>.yaml for each

It implements the subset of kustomize that beamray's manifests use, and refuses everything else
(RenderError) so that it never silently disagrees with `kubectl kustomize`:

* `resources`: YAML files and directories holding a kustomization, in order;
* `patches` with an inline `patch` or a `path`, and an optional `target`
  (group/version/kind/name/namespace; name is an anchored regex, as in kustomize):
  - JSON 6902 patches (a YAML list) with the ops add, remove, replace and test;
  - strategic-merge patches (a mapping) made of maps and scalars only; `null` deletes a key and a
    top-level `$patch: delete` deletes the resource. Lists inside a strategic-merge patch are
    refused, because kustomize merges them by key for built-in kinds but replaces them for CRDs.

Documents come out in declaration order (kustomize sorts them by kind); compare by identity.
"""
import argparse
import copy
import re
import sys
from pathlib import Path

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "patches"}
TARGET_FIELDS = {"group", "version", "kind", "name", "namespace"}


class RenderError(Exception):
    """The kustomization is invalid or uses a feature this renderer does not implement."""


def resource_id(doc):
    api = str(doc.get("apiVersion", ""))
    group, _, version = api.rpartition("/")
    md = doc.get("metadata") or {}
    return group, version, doc.get("kind"), md.get("namespace"), md.get("name")


def _matches(doc, target):
    group, version, kind, namespace, name = resource_id(doc)
    have = {"group": group, "version": version, "kind": kind, "namespace": namespace, "name": name}
    for key, want in target.items():
        value = have[key]
        if value is None or not re.fullmatch(str(want), str(value)):
            return False
    return True


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise RenderError(f"JSON pointer {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container, part, op, allow_end=False):
    if part == "-" and allow_end:
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", part):
        raise RenderError(f"{op}: {part!r} is not a list index")
    i = int(part)
    if i > len(container) or (i == len(container) and not allow_end):
        raise RenderError(f"{op}: index {i} out of range (list has {len(container)} items)")
    return i


def _walk(doc, parts, op):
    node = doc
    for part in parts:
        if isinstance(node, list):
            node = node[_index(node, part, op)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise RenderError(f"{op}: path element {part!r} not found")
    return node


def apply_json6902(doc, ops):
    for op in ops:
        name, path = op.get("op"), op.get("path")
        if name not in ("add", "remove", "replace", "test") or not isinstance(path, str):
            raise RenderError(f"unsupported JSON patch operation {op!r}")
        parts = _pointer(path)
        where = f"{name} {path}"
        if name == "test":
            if _walk(doc, parts, where) != op.get("value"):
                raise RenderError(f"JSON patch test failed: {path} is not {op.get('value')!r}")
            continue
        if not parts:
            raise RenderError(f"{where}: cannot {name} the whole document")
        parent, last = _walk(doc, parts[:-1], where), parts[-1]
        value = copy.deepcopy(op.get("value"))
        if isinstance(parent, list):
            i = _index(parent, last, where, allow_end=(name == "add"))
            if name == "add":
                parent.insert(i, value)
            elif name == "remove":
                del parent[i]
            else:
                parent[i] = value
        elif isinstance(parent, dict):
            if name != "add" and last not in parent:
                raise RenderError(f"{where}: key {last!r} not found")
            if name == "remove":
                del parent[last]
            else:
                parent[last] = value
        else:
            raise RenderError(f"{where}: parent is not a list or mapping")
    return doc


def apply_strategic_merge(doc, patch, where="$"):
    for key, value in patch.items():
        if key == "$patch":
            raise RenderError(f"{where}: '$patch' is only supported as a top-level 'delete'")
        if isinstance(value, list):
            raise RenderError(f"{where}.{key}: lists in strategic-merge patches are not supported; use a JSON 6902 patch")
        if value is None:
            doc.pop(key, None)
        elif isinstance(value, dict) and isinstance(doc.get(key), dict):
            apply_strategic_merge(doc[key], value, f"{where}.{key}")
        else:
            doc[key] = copy.deepcopy(value)
    return doc


def _unshare(obj):
    """Copy without keeping YAML aliases shared (deepcopy would keep them), so a patch on one
    `*anchor` use does not change the others and the output has no &id001 aliases."""
    if isinstance(obj, dict):
        return {k: _unshare(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unshare(v) for v in obj]
    return obj


def _load_yaml_docs(path):
    with open(path, encoding="utf-8") as fh:
        return [_unshare(d) for d in yaml.safe_load_all(fh) if d is not None]


def _kustomization_file(directory):
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    raise RenderError(f"{directory}: no kustomization file")


def _apply_patch(docs, entry, base_dir):
    unknown = set(entry) - {"patch", "path", "target"}
    if unknown or ("patch" in entry) == ("path" in entry):
        raise RenderError(f"{base_dir}: patch entry needs exactly one of patch/path (and optional target), got {sorted(entry)}")
    text = entry["patch"] if "patch" in entry else (base_dir / entry["path"]).read_text(encoding="utf-8")
    patch = yaml.safe_load(text)
    target = entry.get("target")
    if target is not None and (not isinstance(target, dict) or set(target) - TARGET_FIELDS):
        raise RenderError(f"{base_dir}: unsupported patch target {target!r} (supported: {sorted(TARGET_FIELDS)})")
    if isinstance(patch, list):
        if target is None:
            raise RenderError(f"{base_dir}: a JSON 6902 patch needs a target")
    elif isinstance(patch, dict):
        if target is None:
            group, version, kind, namespace, name = resource_id(patch)
            target = {"group": re.escape(group), "version": re.escape(version), "kind": kind, "name": re.escape(str(name))}
            if namespace:
                target["namespace"] = namespace
    else:
        raise RenderError(f"{base_dir}: patch is neither a list (JSON 6902) nor a mapping (strategic merge)")
    hits = [i for i, d in enumerate(docs) if _matches(d, target)]
    if not hits:
        raise RenderError(f"{base_dir}: patch target {target!r} matches no resource")
    for i in reversed(hits):
        if isinstance(patch, list):
            apply_json6902(docs[i], patch)
        elif patch.get("$patch") == "delete":
            del docs[i]
        else:
            body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
            apply_strategic_merge(docs[i], body)


def render(path):
    """Return the list of documents that `kustomize build path` would produce (see module doc)."""
    directory = Path(path)
    kfile = _kustomization_file(directory)
    kust = yaml.safe_load(kfile.read_text(encoding="utf-8")) or {}
    unknown = set(kust) - SUPPORTED_FIELDS
    if unknown:
        raise RenderError(f"{kfile}: unsupported kustomization fields {sorted(unknown)} (supported: {sorted(SUPPORTED_FIELDS)})")
    docs = []
    for res in kust.get("resources") or []:
        p = directory / res
        docs.extend(render(p) if p.is_dir() else _load_yaml_docs(p))
    seen = set()
    for d in docs:
        rid = resource_id(d)
        if rid in seen:
            raise RenderError(f"{kfile}: duplicate resource {rid}")
        seen.add(rid)
    for entry in kust.get("patches") or []:
        _apply_patch(docs, entry, directory)
    return docs


def dump(docs):
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=1000)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", metavar="DIR", help="directory holding a kustomization")
    ap.add_argument("--out", type=Path, help="write DIR/<name>.yaml per path instead of printing")
    args = ap.parse_args(argv)
    try:
        for p in args.paths:
            text = dump(render(p))
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / f"{Path(p).resolve().name}.yaml").write_text(text, encoding="utf-8")
            else:
                sys.stdout.write(("---\n" if len(args.paths) > 1 else "") + text)
    except (RenderError, OSError, yaml.YAMLError) as e:
        print(f"render.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
