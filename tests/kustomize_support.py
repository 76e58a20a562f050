"""Rendering the Kubernetes manifests of deploy/kubernetes as `kubectl apply -k` would.

The real tool first: `kustomize build`, else `kubectl kustomize` (kubectl embeds kustomize; the
machines the project runs on have it). Neither can be installed in a version that reads today's
kustomization files from Debian (its kubectl 1.20 embeds kustomize 2.0, which refuses
`patches:`), PyPI or npm, so a fresh machine without them renders with `render_in_python`: the
few kustomize features these manifests use (resources, a namespace, a ConfigMap generated from
files with a content-hash suffix, strategic-merge patches), refusing any other.
tests/unit/test_kubernetes.py checks that it renders what the real tool does, wherever that is
installed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "resources", "patches",
                        "configMapGenerator"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "PriorityClass"}
# Lists that a strategic-merge patch merges item by item (by this key), as the Kubernetes API's
# patchMergeKey says; every other list is replaced whole.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "ports": "containerPort"}
# kustomize's hash alphabet: hexadecimal with 0, 1, 3, a and e replaced (no vowels).
HASH_LETTERS = str.maketrans("013ae", "ghkmt")


@cache
def kustomize_command() -> tuple[str, ...] | None:
    """The real kustomize, standalone or inside kubectl; None when neither is installed."""
    if shutil.which("kustomize"):
        return ("kustomize", "build")
    if shutil.which("kubectl"):
        probe = subprocess.run(["kubectl", "kustomize", "--help"], capture_output=True,
                               check=False)
        if probe.returncode == 0:
            return ("kubectl", "kustomize")
    return None


def render(directory: Path) -> list[Resource]:
    """The resources `kubectl apply -k directory` would send (a copy each time: callers may
    change it)."""
    return copy.deepcopy(_render(directory, _fingerprint(directory)))


@cache
def _render(directory: Path, fingerprint: tuple[tuple[str, float], ...]) -> list[Resource]:
    command = kustomize_command()
    return render_with_tool(command, directory) if command else render_in_python(directory)


def _fingerprint(directory: Path) -> tuple[tuple[str, float], ...]:
    """The files a rendering reads (the directory's and its bases'), with their mtimes."""
    roots = [directory.resolve()]
    if roots[0].parent.name == "overlays":
        roots.append(roots[0].parents[1] / "base")
    return tuple(sorted((str(p), p.stat().st_mtime) for root in roots for p in root.iterdir()))


def render_with_tool(command: tuple[str, ...], directory: Path) -> list[Resource]:
    done = subprocess.run([*command, str(directory)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, f"{' '.join(command)} {directory}: {done.stderr}"
    return [r for r in yaml.safe_load_all(done.stdout) if r]


def render_in_python(directory: Path) -> list[Resource]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    if unknown:
        raise ValueError(f"{directory}: kustomize features the fallback lacks: {unknown}")
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            resources.extend(render_in_python(path))
        else:
            resources.extend(r for r in yaml.safe_load_all(path.read_text()) if r)
    for generator in kustomization.get("configMapGenerator", []):
        resources.append(_generate_config_map(directory, generator, resources))
    for patch in kustomization.get("patches", []):
        if set(patch) != {"path"}:
            raise ValueError(f"{directory}: only patches given by path: {patch}")
        change = yaml.safe_load((directory / patch["path"]).read_text())
        target = _find(resources, change["kind"], change["metadata"]["name"])
        merged = strategic_merge(target, change)
        target.clear()
        target.update(merged)
    namespace = kustomization.get("namespace")
    if namespace:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = namespace
    return resources


def _generate_config_map(directory: Path, generator: Resource,
                         resources: list[Resource]) -> Resource:
    if set(generator) != {"name", "files"}:
        raise ValueError(f"{directory}: only generators from files: {generator}")
    data = {Path(f).name: (directory / f).read_text() for f in generator["files"]}
    name = f"{generator['name']}-{content_hash(generator['name'], data)}"
    for resource in resources:  # kustomize renames the references of pods to it
        for volume in _pod_spec(resource).get("volumes", []):
            if volume.get("configMap", {}).get("name") == generator["name"]:
                volume["configMap"]["name"] = name
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def content_hash(name: str, data: dict[str, str]) -> str:
    """Ten characters of a SHA-256 of the ConfigMap, in kustomize's alphabet (not its exact
    value: only that it changes with the content matters here)."""
    encoded = json.dumps({"data": data, "kind": "ConfigMap", "name": name}, sort_keys=True)
    return hashlib.sha256(encoded.encode()).hexdigest()[:10].translate(HASH_LETTERS)


def _pod_spec(resource: Resource) -> Resource:
    spec: Resource = resource.get("spec", {}).get("template", {}).get("spec", {})
    return spec


def _find(resources: list[Resource], kind: str, name: str) -> Resource:
    for resource in resources:
        if resource["kind"] == kind and resource["metadata"]["name"] == name:
            return resource
    raise ValueError(f"no {kind} {name} to patch")


def strategic_merge(base: Any, change: Any, field: str = "") -> Any:
    """`change` merged into a copy of `base`, as a strategic-merge patch does for the fields
    of MERGE_KEYS: maps key by key, those lists item by item, anything else replaced."""
    if isinstance(base, dict) and isinstance(change, dict):
        merged = copy.deepcopy(base)
        for key, value in change.items():
            merged[key] = strategic_merge(base[key], value, key) if key in base \
                else copy.deepcopy(value)
        return merged
    key = MERGE_KEYS.get(field)
    if key and isinstance(base, list) and isinstance(change, list):
        merged_list = copy.deepcopy(base)
        for item in change:
            match = [i for i, old in enumerate(merged_list) if old.get(key) == item.get(key)]
            if match:
                merged_list[match[0]] = strategic_merge(merged_list[match[0]], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(change)
