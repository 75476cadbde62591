"""Renders and lints the Helm chart with Helm's own Go SDK (PyPI helm-python-sdk).

helm-python-sdk's ``Chart.render`` takes no API versions, so ``render`` calls the same native
entry point with ``api_versions`` (what ``helm template --api-versions`` sets): that is how
the ServiceMonitor and PrometheusRule, gated on ``.Capabilities.APIVersions.Has``, render.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.assets import REPO_ROOT

CHART = REPO_ROOT / "deploy" / "k8s" / "framewire"
CI_VALUES = CHART / "ci"
RELEASE = "fw"
NAMESPACE = "vision"
PROMETHEUS_OPERATOR_APIS = (
    "monitoring.coreos.com/v1",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)
# The value sets CI renders: the defaults, and each file in the chart's ci/ folder.
VALUE_SETS = ("default", "gpu", "cpu", "single", "monitoring", "tls")


def helm() -> Any:
    return pytest.importorskip("helm_python", reason="helm-python-sdk is in the dev extra")


def kubernetes_version() -> str:
    """The newest Kubernetes release kubernetes-validate knows: 'a current version'."""
    from kubernetes_validate import utils

    version: str = utils.latest_version()
    return version


def values_for(value_set: str) -> dict[str, Any]:
    if value_set == "default":
        return {}
    loaded: dict[str, Any] = yaml.safe_load((CI_VALUES / f"{value_set}-values.yaml").read_text())
    return loaded


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def render_files(
    values: Mapping[str, Any] | None = None, *, api_versions: tuple[str, ...] = ()
) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would write them."""
    module = helm()
    from helm_python import _native  # the entry point Chart.render wraps

    chart = module.Chart.load(CHART)
    try:
        options = {
            "name": RELEASE,
            "namespace": NAMESPACE,
            "is_install": True,
            "kube_version": "v" + kubernetes_version(),
            "api_versions": list(api_versions),
        }
        rendered = _native.call_string(
            "helm_render",
            chart._raw(),
            json.dumps(dict(values or {})),
            json.dumps(options),
        )
    finally:
        chart.close()
    files: dict[str, str] = json.loads(rendered)
    return files


def render(
    values: Mapping[str, Any] | None = None, *, api_versions: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Every manifest the chart renders, parsed."""
    manifests: list[dict[str, Any]] = []
    for path, text in sorted(render_files(values, api_versions=api_versions).items()):
        if path.endswith("NOTES.txt"):
            continue
        manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return manifests


def find(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for manifest in manifests:
        if manifest["kind"] == kind and manifest["metadata"]["name"] == name:
            return manifest
    kinds = sorted(f"{m['kind']}/{m['metadata']['name']}" for m in manifests)
    raise AssertionError(f"no {kind}/{name} among {kinds}")


def kinds(manifests: list[dict[str, Any]]) -> set[str]:
    return {manifest["kind"] for manifest in manifests}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, containers
    return containers[0]


def write_manifests(manifests: list[dict[str, Any]], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, manifest in enumerate(manifests):
        path = folder / f"{index:02d}-{manifest['kind']}-{manifest['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        paths.append(path)
    return paths


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "m": 10**-3}


def quantity(text: str | int | float) -> float:
    """A Kubernetes resource quantity as a number: "500m" is 0.5, "1Gi" 2**30, "2" 2."""
    value = str(text)
    for suffixes in (_BINARY, _DECIMAL):
        for suffix, factor in suffixes.items():
            if value.endswith(suffix):
                return float(value[: -len(suffix)]) * factor
    return float(value)


def limit_options(spec: dict[str, Any]) -> list[str]:
    """podman options enforcing a container's resource limits as the kubelet does: a CPU
    limit is a CFS quota (``--cpus``), a memory limit the cgroup's (``--memory``)."""
    limits = spec.get("resources", {}).get("limits", {})
    options = []
    if "cpu" in limits:
        options.append(f"--cpus={quantity(limits['cpu']):g}")
    if "memory" in limits:
        options.append(f"--memory={int(quantity(limits['memory']))}")
    return options
