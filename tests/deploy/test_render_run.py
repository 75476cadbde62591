"""Render and run: the chart's `single` and `split` renderings started as podman containers from
the images above, each container with the rendered command, args, env, ports, user, read-only
root, emptyDir mounts and resource limits (CPU as a quota, memory as the cgroup's limit), every
pod in its own network namespace (as in a cluster). The chart's own probes then run against
them (gRPC health at the probe's port, within the startup budget), and an edge-agent streams
vtest through the port the ingest Service targets. This proves that the chart's flags, env
names, ports, probes and limits match the program."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from framewire.common.cpus import affinity_cores
from framewire.common.exits import ExitCode
from tests.conftest import vtest_path
from tests.deploy import podman
from tests.deploy.chart import (
    NAMESPACE,
    container,
    find,
    limit_options,
    merged,
    render,
    values_for,
)
from tests.harness import Process, running

pytestmark = pytest.mark.slow
ADDRESS_FORMAT = "{{.NetworkSettings.IPAddress}}"


def health(address: str) -> str:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        except grpc.RpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


def probe_until_serving(address: str, probe: dict[str, Any], what: str) -> float:
    """Runs a gRPC probe as the kubelet would: every periodSeconds, up to failureThreshold."""
    started = time.monotonic()
    for _ in range(probe["failureThreshold"]):
        if health(address) == "SERVING":
            return time.monotonic() - started
        time.sleep(probe["periodSeconds"])  # the probe's own period, as the kubelet waits
    raise AssertionError(f"{what}: not SERVING within its startup probe's budget")


class Pod:
    """One rendered Deployment's container, run by podman in its own network namespace."""

    def __init__(
        self, deployment: dict[str, Any], hosts: dict[str, str], secrets: dict[str, Path]
    ) -> None:
        self.deployment = deployment
        self.spec = container(deployment)
        self.name = podman.container_name(self.spec["name"])
        pod = deployment["spec"]["template"]["spec"]
        user = pod["securityContext"]
        context = self.spec["securityContext"]
        options = [f"--user={user['runAsUser']}:{user['runAsGroup']}"]
        if context.get("readOnlyRootFilesystem"):
            options.append("--read-only")
        options += [f"--cap-drop={cap}" for cap in context["capabilities"]["drop"]]
        options += limit_options(self.spec)
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in self.spec.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                # emptyDir with fsGroup: writable by the pod's user
                options.append(f"--tmpfs={mount['mountPath']}:mode=1777")
            else:
                # A Secret volume: its keys as files, read-only, as the kubelet mounts them.
                assert mount.get("readOnly") is True, mount
                folder = secrets[volume["secret"]["secretName"]]
                options.append(f"--volume={folder}:{mount['mountPath']}:ro")
        for variable in self.spec.get("env", []):
            options.append(f"--env={variable['name']}={variable['value']}")
        options += [f"--add-host={name}:{address}" for name, address in hosts.items()]
        options.append(f"--entrypoint={self.spec['command'][0]}")
        self.command = [
            str(podman.PODMAN),
            "run",
            "--rm",
            f"--name={self.name}",
            "--ulimit=host",
            *options,
            self.spec["image"],
            *self.spec["command"][1:],
            *self.spec["args"],
        ]
        self.process = Process(self.command)
        self.ports = {p["name"]: p["containerPort"] for p in self.spec["ports"]}

    def address(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            inspected = subprocess.run(
                [str(podman.PODMAN), "inspect", f"--format={ADDRESS_FORMAT}", self.name],
                capture_output=True,
                text=True,
                check=False,
            )
            if inspected.returncode == 0 and inspected.stdout.strip():
                return inspected.stdout.strip()
            if self.process.process.poll() is not None:
                break
            time.sleep(0.2)  # podman creates the container's network asynchronously
        raise AssertionError(f"{self.name} has no address:\n{self.process.text()}")

    def probe(self, address: str) -> None:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = self.spec[kind]
            port = probe["grpc"]["port"]
            port = self.ports[port] if isinstance(port, str) else port
            probe_until_serving(f"{address}:{port}", probe, f"{self.name} {kind}")

    def stop(self) -> int:
        grace = self.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        return self.process.stop(timeout=grace)


@contextlib.contextmanager
def started(
    deployment: dict[str, Any],
    hosts: dict[str, str] | None = None,
    secrets: dict[str, Path] | None = None,
) -> Iterator[tuple[Pod, str]]:
    pod = Pod(deployment, hosts or {}, secrets or {})
    try:
        with running(pod.process):
            address = pod.address()
            pod.probe(address)
            yield pod, address
            assert pod.stop() == 0, pod.process.text()
    finally:
        podman.remove(pod.name)


def image_values() -> dict[str, Any]:
    repository, tag = podman.SERVER_IMAGE.rsplit(":", 1)
    return {"image": {"server": {"repository": repository, "tag": tag}}}


def stream_vtest(address: str, *options: str) -> list[dict[str, Any]]:
    agent = Process(
        [
            str(Path(sys.executable).with_name("edge-agent")),
            f"--server={address}",
            f"--source={vtest_path()}",
            "--frames=20",
            "--fps=10",
            "--stream-id=render-run",
            "--output=jsonl",
            *options,
        ]
    )
    with running(agent):
        assert agent.wait(180) == 0, agent.text()
    events = [json.loads(line) for line in agent.output if line.startswith("{")]
    results = [event for event in events if event["type"] == "result"]
    assert results, agent.text()
    assert all(r["error"] is None for r in results), agent.text()
    assert "person" in {d["label"] for r in results for d in r["detections"]}
    return results


def service_target(manifests: list[dict[str, Any]], pod: Pod, address: str) -> str:
    """Where the ingest Service's grpc port leads: its targetPort on the pod."""
    service = find(manifests, "Service", "fw-framewire-ingest")
    grpc_port = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    target = grpc_port["targetPort"]
    port = pod.ports[target] if isinstance(target, str) else target
    return f"{address}:{port}"


def test_single_rendering_runs_and_serves_through_its_service() -> None:
    podman.built_images()
    vtest_path()
    manifests = render(merged(values_for("single"), image_values()))
    serve = find(manifests, "Deployment", "fw-framewire-serve")
    with started(serve) as (pod, address):
        stream_vtest(service_target(manifests, pod, address))


def test_split_rendering_runs_ingest_in_front_of_inference() -> None:
    podman.built_images()
    vtest_path()
    manifests = render(merged(values_for("cpu"), image_values()))
    inference = find(manifests, "Deployment", "fw-framewire-inference")
    ingest = find(manifests, "Deployment", "fw-framewire-ingest")
    target = next(a for a in container(ingest)["args"] if a.startswith("--inference="))
    host = f"fw-framewire-inference.{NAMESPACE}.svc.cluster.local"
    headless = find(manifests, "Service", "fw-framewire-inference")
    assert headless["spec"]["clusterIP"] == "None"
    service_port = headless["spec"]["ports"][0]
    assert target == f"--inference=dns:///{host}:{service_port['port']}"
    with started(inference) as (inference_pod, inference_address):
        # Its CPU limit of 1 (ci/cpu-values.yaml) is a quota on this 2-core machine.
        if affinity_cores() > 1:
            inference_pod.process.wait_for_line(r"CPU quota: 1 of the \d+ cores", timeout=10)
        # The headless Service's port leads to the container port of the same name.
        assert inference_pod.ports[service_port["targetPort"]] == service_port["port"]
        # Cluster DNS for the headless Service answers with the pod's address.
        with started(ingest, {host: inference_address}) as (ingest_pod, ingest_address):
            stream_vtest(service_target(manifests, ingest_pod, ingest_address))


def secret(folder: Path, name: str, files: dict[str, bytes]) -> tuple[str, Path]:
    """A Secret's keys as files the pod's user can read (the kubelet's default mode 0644)."""
    path = folder / name
    path.mkdir(parents=True)
    path.chmod(0o755)
    for key, content in files.items():
        (path / key).write_bytes(content)
        (path / key).chmod(0o644)
    return name, path


def test_tls_rendering_runs_with_mtls_tokens_and_probes_on_the_health_port(
    tmp_path: Path,
) -> None:
    """The TLS value set: devices reach ingest over TLS with a token, ingest reaches inference
    over mTLS with its own token, and the kubelet's plaintext probes use the health port."""
    podman.built_images()
    vtest_path()
    from framewire.common.auth import entry_line, new_token
    from framewire.common.throwaway_ca import ThrowawayCA

    values = merged(values_for("tls"), image_values())
    manifests = render(values)
    tls, internal, auth = values["tls"], values["tls"]["internal"], values["auth"]
    public = "ingest.framewire.test"
    authority = ThrowawayCA("render-run CA")
    ca = authority.cert_pem
    ingest_server = authority.issue([public])
    ingest = find(manifests, "Deployment", "fw-framewire-ingest")
    server_name = next(
        a.split("=", 1)[1]
        for a in container(ingest)["args"]
        if a.startswith("--inference-tls-server-name=")
    )
    inference_server = authority.issue([server_name])
    ingest_client = authority.issue(["ingest"], client=True)
    device_token, ingest_token = new_token(), new_token()
    tmp_path.chmod(0o755)
    secrets = dict(
        [
            secret(
                tmp_path,
                tls["secretName"],
                {"tls.crt": ingest_server.cert_pem, "tls.key": ingest_server.key_pem},
            ),
            secret(
                tmp_path,
                internal["inferenceSecretName"],
                {
                    "ca.crt": ca,
                    "tls.crt": inference_server.cert_pem,
                    "tls.key": inference_server.key_pem,
                },
            ),
            secret(
                tmp_path,
                internal["ingestClientSecretName"],
                {
                    "ca.crt": ca,
                    "tls.crt": ingest_client.cert_pem,
                    "tls.key": ingest_client.key_pem,
                },
            ),
            secret(
                tmp_path,
                auth["tokensSecretName"],
                {"tokens": (entry_line("camera", device_token, ["render-*"]) + "\n").encode()},
            ),
            secret(
                tmp_path,
                auth["inferenceTokensSecretName"],
                {"tokens": (entry_line("ingest", ingest_token, ["*"]) + "\n").encode()},
            ),
            secret(tmp_path, auth["ingestTokenSecretName"], {"token": ingest_token.encode()}),
        ]
    )
    device = tmp_path / "device"
    device.mkdir()
    (device / "ca.crt").write_bytes(ca)
    (device / "token").write_text(device_token)

    inference = find(manifests, "Deployment", "fw-framewire-inference")
    host = f"fw-framewire-inference.{NAMESPACE}.svc.cluster.local"
    with (
        started(inference, secrets=secrets) as (_, inference_address),
        started(ingest, {host: inference_address}, secrets) as (ingest_pod, address),
    ):
        target = service_target(manifests, ingest_pod, address)
        stream_vtest(
            target,
            f"--tls-ca={device / 'ca.crt'}",
            f"--tls-server-name={public}",
            f"--token-file={device / 'token'}",
        )
        # Without the token the same stream is refused: the secrets are in force.
        refused = Process(
            [
                str(Path(sys.executable).with_name("edge-agent")),
                f"--server={target}",
                f"--source={vtest_path()}",
                "--frames=2",
                "--stream-id=render-run",
                f"--tls-ca={device / 'ca.crt'}",
                f"--tls-server-name={public}",
            ],
            env={"FRAMEWIRE_TOKEN": ""},
        )
        with running(refused):
            assert refused.wait(60) == ExitCode.AUTH_REFUSED, refused.text()
