"""The Helm chart: lint, render for each value set, strict Kubernetes schemas, the values schema,
and the facts that tie manifests to the program (probe ports, drain times, connection age)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.assets import REPO_ROOT
from tests.deploy.chart import (
    CHART,
    NAMESPACE,
    PROMETHEUS_OPERATOR_APIS,
    RELEASE,
    VALUE_SETS,
    container,
    find,
    helm,
    kinds,
    kubernetes_version,
    limit_options,
    merged,
    render,
    render_files,
    values_for,
    write_manifests,
)

FULLNAME = f"{RELEASE}-framewire"


def apis_for(value_set: str) -> tuple[str, ...]:
    return PROMETHEUS_OPERATOR_APIS if value_set == "monitoring" else ()


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_is_clean(value_set: str) -> None:
    report = helm().lint(
        CHART, values_for(value_set), strict=True, kube_version="v" + kubernetes_version()
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert report["errors"] == [], report
    assert problems == [], problems


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_rendered_manifest_passes_kubernetes_validate_strict(
    value_set: str, tmp_path: Path
) -> None:
    manifests = render(values_for(value_set), api_versions=apis_for(value_set))
    builtin = [m for m in manifests if not m["apiVersion"].startswith("monitoring.coreos.com/")]
    paths = write_manifests(builtin, tmp_path)
    checked = subprocess.run(
        [
            str(Path(sys.executable).with_name("kubernetes-validate")),
            "--strict",
            "--kubernetes-version",
            kubernetes_version(),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(" passed for resource ") == len(paths), checked.stdout


def test_yamllint_passes_on_values_and_every_rendering(tmp_path: Path) -> None:
    yamllint = Path(sys.executable).with_name("yamllint")
    config = REPO_ROOT / "deploy" / ".yamllint.yaml"
    sources = [CHART / "Chart.yaml", CHART / "values.yaml", *sorted((CHART / "ci").glob("*.yaml"))]
    rendered = []
    for value_set in VALUE_SETS:
        files = render_files(values_for(value_set), api_versions=apis_for(value_set))
        for name, text in files.items():
            if name.endswith(".yaml") and text.strip():
                path = tmp_path / value_set / Path(name).name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                rendered.append(path)
    checked = subprocess.run(
        [str(yamllint), "--strict", "-c", str(config), *map(str, sources + rendered)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_split_mode_is_ingest_in_front_of_gpu_inference_behind_a_headless_service() -> None:
    manifests = render()
    ingest = container(find(manifests, "Deployment", f"{FULLNAME}-ingest"))
    assert ingest["command"] == ["framewire"]
    assert ingest["args"][0] == "ingest"
    target = f"dns:///{FULLNAME}-inference.{NAMESPACE}.svc.cluster.local:50051"
    assert f"--inference={target}" in ingest["args"]
    headless = find(manifests, "Service", f"{FULLNAME}-inference")
    assert headless["spec"]["clusterIP"] == "None"
    front = find(manifests, "Service", f"{FULLNAME}-ingest")
    grpc_port = next(p for p in front["spec"]["ports"] if p["name"] == "grpc")
    assert grpc_port["appProtocol"] == "grpc"
    assert front["spec"]["type"] == "ClusterIP"

    inference_deployment = find(manifests, "Deployment", f"{FULLNAME}-inference")
    pod = inference_deployment["spec"]["template"]["spec"]
    inference = container(inference_deployment)
    assert inference["args"][0] == "inference"
    assert inference["image"].startswith("ghcr.io/framewire/framewire-server-gpu:")
    assert inference["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert "runtimeClassName" not in pod
    # The engine cache and its builder are for --backend tensorrt: off by default.
    assert "initContainers" not in pod
    assert all(volume["name"] != "engine-cache" for volume in pod["volumes"])
    assert kinds(manifests) >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
        "ServiceAccount",
    }


def test_gpu_values_set_runtime_class_engine_cache_pvc_and_inference_autoscaler() -> None:
    manifests = render(values_for("gpu"))
    deployment = find(manifests, "Deployment", f"{FULLNAME}-inference")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    cache = next(v for v in pod["volumes"] if v["name"] == "engine-cache")
    assert cache["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-engine-cache"
    claim = find(manifests, "PersistentVolumeClaim", f"{FULLNAME}-engine-cache")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    inference_args = container(deployment)["args"]
    assert "--device=cuda" in inference_args
    assert "--engine-cache=/var/cache/framewire/engines" in inference_args
    # The init container builds exactly the engine the server will look for.
    (build,) = pod["initContainers"]
    assert build["args"][:3] == ["engine", "build", "/models/yolo11n.onnx"]
    assert {
        "--engine-cache=/var/cache/framewire/engines",
        "--max-batch=16",
        "--precision=fp16",
    } <= set(build["args"])
    assert {"name": "engine-cache", "mountPath": "/var/cache/framewire/engines"} in build[
        "volumeMounts"
    ]
    for shaping in ("--max-batch=16", "--precision=fp16"):
        assert shaping in inference_args
    hpa = find(manifests, "HorizontalPodAutoscaler", f"{FULLNAME}-inference")
    metric = hpa["spec"]["metrics"][0]["external"]
    assert metric["metric"]["name"] == "framewire_queue_latency_seconds_p95"
    assert metric["target"] == {"type": "Value", "value": "100m"}
    front = find(manifests, "Service", f"{FULLNAME}-ingest")
    assert front["spec"]["type"] == "LoadBalancer"
    assert front["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]


def test_single_mode_runs_serve_behind_the_same_service_name() -> None:
    manifests = render(values_for("single"))
    deployments = [m for m in manifests if m["kind"] == "Deployment"]
    assert [d["metadata"]["name"] for d in deployments] == [f"{FULLNAME}-serve"]
    serve = container(deployments[0])
    assert serve["args"][:1] == ["serve"]
    assert {"--max-batch-size=4", "--batches-in-flight=1"} <= set(serve["args"])
    service = find(manifests, "Service", f"{FULLNAME}-ingest")
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "serve"
    assert not [m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"]


@pytest.mark.parametrize("value_set", ["default", "single"])
def test_lifecycle_matches_the_program(value_set: str) -> None:
    values = merged({}, values_for(value_set))
    manifests = render(values)
    for deployment in (m for m in manifests if m["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        server = container(deployment)
        args = server["args"]
        grace = int(next(a for a in args if a.startswith("--shutdown-grace=")).split("=")[1])
        pre_stop = server["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        # SIGTERM arrives after preStop; the server then drains for --shutdown-grace.
        assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + grace
        assert "--max-connection-age=1800" in args
        ports = {p["name"]: p["containerPort"] for p in server["ports"]}
        assert f"--port={ports['grpc']}" in args
        assert f"--metrics-port={ports['metrics']}" in args
        assert "--metrics-host=0.0.0.0" in args  # Prometheus scrapes the pod's address
        # Kubelet gRPC probes speak plaintext: they use the health-only port.
        assert f"--health-port={ports['health']}" in args
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert server[probe]["grpc"]["port"] == ports["health"], probe
        live = server["livenessProbe"]
        # Health says NOT_SERVING while draining: liveness must not kill a draining server.
        assert live["periodSeconds"] * live["failureThreshold"] > int(pre_stop[1]) + grace
        startup = server["startupProbe"]
        if server["args"][0] in ("inference", "serve"):
            # Sized for loading a model and, with the GPU issue, building an engine.
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
        context = server["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["allowPrivilegeEscalation"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False


def test_tls_values_mount_secrets_and_probe_the_plaintext_health_port() -> None:
    manifests = render(values_for("tls"))
    ingest_deployment = find(manifests, "Deployment", f"{FULLNAME}-ingest")
    ingest = container(ingest_deployment)
    assert "--health-port=8081" in ingest["args"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert ingest[probe]["grpc"]["port"] == 8081
    assert {
        "--tls-cert=/etc/framewire/tls/tls.crt",
        "--tls-key=/etc/framewire/tls/tls.key",
        "--auth-tokens=/etc/framewire/tokens/tokens",
        "--inference-tls-ca=/etc/framewire/inference-tls/ca.crt",
        "--inference-token-file=/etc/framewire/inference-token/token",
    } <= set(ingest["args"])
    secrets = {
        v["name"]: v["secret"]["secretName"]
        for v in ingest_deployment["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    }
    assert secrets == {
        "tls": "framewire-ingest-tls",
        "tokens": "framewire-device-tokens",
        "inference-tls": "framewire-ingest-client-tls",
        "inference-token": "framewire-ingest-token",
    }
    inference = container(find(manifests, "Deployment", f"{FULLNAME}-inference"))
    assert "--tls-client-ca=/etc/framewire/tls/ca.crt" in inference["args"]
    assert "--auth-tokens=/etc/framewire/tokens/tokens" in inference["args"]
    assert "--reflection" not in ingest["args"]
    assert (
        "--reflection"
        in container(find(render({"reflection": True}), "Deployment", f"{FULLNAME}-ingest"))["args"]
    )


def test_monitoring_resources_render_only_where_their_api_exists() -> None:
    without = kinds(render(values_for("monitoring")))
    assert not without & {"ServiceMonitor", "PrometheusRule"}
    manifests = render(values_for("monitoring"), api_versions=PROMETHEUS_OPERATOR_APIS)
    monitor = find(manifests, "ServiceMonitor", FULLNAME)
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    rule = find(manifests, "PrometheusRule", FULLNAME)
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == {
        "FramewireEndToEndLatencyHigh",
        "FramewireSkipRatioHigh",
        "FramewireNoServingInference",
        "FramewireFramesFailing",
    }


def test_dashboard_configmap_carries_deploy_grafana_json() -> None:
    shipped = (REPO_ROOT / "deploy" / "grafana" / "framewire.json").read_text()
    assert (CHART / "files" / "framewire.json").read_text() == shipped
    configmap = find(render(), "ConfigMap", f"{FULLNAME}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["framewire.json"]) == json.loads(shipped)


def test_network_policies_admit_devices_to_grpc_and_only_ingest_to_inference() -> None:
    manifests = render()
    front = find(manifests, "NetworkPolicy", f"{FULLNAME}-ingest")["spec"]
    device_rule = front["ingress"][0]
    assert device_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert device_rule["from"] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
    inference = find(manifests, "NetworkPolicy", f"{FULLNAME}-inference")["spec"]
    grpc_rule = inference["ingress"][0]
    assert grpc_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "ingest"
    )
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "both"}, "mode"),
        ({"ports": {"grpc": "fifty"}}, "grpc"),
        ({"ports": {"grpc": 70000}}, "grpc"),
        ({"ingest": {"replica": 3}}, "replica"),
        ({"ingest": {"service": {"type": "Ingress"}}}, "type"),
        ({"monitoring": {"prometheusRule": {"skipRatioThreshold": 2}}}, "skipRatioThreshold"),
        (
            {"tls": {"enabled": True, "secretName": "x"}, "probes": {"healthPort": None}},
            "healthPort",
        ),
        ({"auth": {"enabled": True}}, "tokensSecretName"),
        ({"inference": {"settings": {"max-batch": 4}}}, "settings"),
    ],
)
def test_values_schema_rejects_wrong_values_with_a_readable_message(
    values: dict[str, Any], message: str
) -> None:
    module = helm()
    with pytest.raises(module.HelmError) as raised:
        render(values)
    text = str(raised.value)
    assert "values don't meet the specifications of the schema" in text, text
    assert message in text, text


def test_liveness_shorter_than_a_drain_is_refused() -> None:
    module = helm()
    with pytest.raises(module.HelmError, match=r"must exceed lifecycle\.preStopSleepSeconds"):
        render({"probes": {"liveness": {"periodSeconds": 5, "failureThreshold": 2}}})


def test_every_value_set_renders_parseable_manifests_with_unique_names() -> None:
    for value_set in VALUE_SETS:
        manifests = render(values_for(value_set), api_versions=apis_for(value_set))
        names = [(m["kind"], m["metadata"]["name"]) for m in manifests]
        assert len(names) == len(set(names)), names
        for manifest in manifests:
            assert manifest["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
            assert yaml.safe_load(yaml.safe_dump(manifest)) == manifest


@pytest.mark.parametrize(
    ("inference", "message"),
    [
        (
            {"engineBuild": {"enabled": True}, "engineCache": {"enabled": True}},
            "needs inference.settings.model",
        ),
        (
            {"engineBuild": {"enabled": True}, "settings": {"model": "/models/m.onnx"}},
            "needs inference.engineCache.enabled",
        ),
    ],
)
def test_an_engine_build_without_a_model_or_cache_is_refused_at_render(
    inference: dict[str, Any], message: str
) -> None:
    with pytest.raises(Exception, match=message):
        render({"inference": inference})


def test_render_run_enforces_the_rendered_limits() -> None:
    # What tests/deploy/test_render_run.py gives podman for each rendered container.
    manifests = render(values_for("cpu"))
    inference = container(find(manifests, "Deployment", "fw-framewire-inference"))
    assert limit_options(inference) == ["--cpus=1", f"--memory={2 * 2**30}"]
    ingest = container(find(manifests, "Deployment", "fw-framewire-ingest"))
    assert limit_options(ingest) == [f"--memory={2**30}"]  # no CPU limit by default
    half = {"resources": {"limits": {"cpu": "500m", "memory": "512M"}}}
    assert limit_options(half) == ["--cpus=0.5", "--memory=512000000"]
