"""The chart's rules and dashboard against real tools: promtool checks and unit-tests the rules,
and a real Prometheus scraping a real `framewire serve` with an agent's traffic evaluates every
PromQL expression of the rules and the dashboard, each of which must return data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.assets import REPO_ROOT
from tests.conftest import vtest_path
from tests.deploy.chart import PROMETHEUS_OPERATOR_APIS, RELEASE, find, render
from tests.harness import Process, framewire_command, free_port, running, scrape, wait_until

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "framewire.json"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")
# What Grafana substitutes in the dashboard's queries, as this test sets it.
DASHBOARD_VARIABLES = {"$__rate_interval": "30s", "$namespace": ".*"}
COMPARISON = re.compile(r"\s(>|<|==|!=|>=|<=)\s")
METRIC_NAME = re.compile(r"\bframewire_[a-z0-9_]+\b")


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return binary


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered PrometheusRule's groups as a Prometheus rule file."""
    manifests = render({}, api_versions=PROMETHEUS_OPERATOR_APIS)
    rule = find(manifests, "PrometheusRule", f"{RELEASE}-framewire")
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def rules(rules_file: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expression = target["expr"]
            for variable, value in DASHBOARD_VARIABLES.items():
                expression = expression.replace(variable, value)
            assert "$" not in expression, f"unsubstituted variable in {expression}"
            found.append((f"dashboard '{panel['title']}' {target['refId']}", expression))
    return found


def test_promtool_checks_the_rendered_rules(rules_file: Path) -> None:
    checked = subprocess.run(
        [promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout


def test_promtool_unit_tests_fire_each_alert(rules_file: Path) -> None:
    binary = promtool()
    shutil.copy(ALERT_TESTS, rules_file.parent / ALERT_TESTS.name)
    tested = subprocess.run(
        [binary, "test", "rules", ALERT_TESTS.name],
        cwd=rules_file.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    assert tested_alerts == {rule["alert"] for rule in rules(rules_file) if "alert" in rule}


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def with_bool(expression: str) -> str:
    """An alert's condition as 0/1 for every series it compares: `X > 0.5` -> `X > bool 0.5`,
    so a quiet alert still shows that its left-hand side has data."""
    depth = 0
    position = None
    for index, char in enumerate(expression):
        depth += char == "("
        depth -= char == ")"
        if depth == 0 and COMPARISON.match(expression, index):
            position = index
    assert position is not None, f"no top-level comparison in {expression}"
    match = COMPARISON.match(expression, position)
    assert match is not None
    return f"{expression[: match.end()]}bool {expression[match.end() :]}"


class Checker:
    """Evaluates expressions on a Prometheus that scrapes a framewire server with traffic."""

    def __init__(self, prometheus_port: int, exported: set[str]) -> None:
        self.port = prometheus_port
        self.exported = exported

    def check(self, where: str, expression: str) -> None:
        unknown = set(METRIC_NAME.findall(expression)) - self.exported
        assert not unknown, f"{where}: no such metric {sorted(unknown)} in: {expression}"
        result = query(self.port, expression)
        assert result, f"{where}: no data from {expression}"


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory, rules_file: Path) -> Iterator[Checker]:
    """framewire serve, a Prometheus with the chart's rules scraping it each second, and an
    edge-agent streaming vtest long enough for several scrapes, rule runs and reports."""
    prometheus_binary = shutil.which("prometheus")
    if prometheus_binary is None:
        pytest.skip("the prometheus server is not installed (Debian: apt-get install prometheus)")
    video = vtest_path()
    folder = tmp_path_factory.mktemp("prometheus")
    grpc_port, metrics_port, prometheus_port = free_port(), free_port(), free_port()
    server_command = framewire_command(
        "serve",
        f"--port={grpc_port}",
        f"--metrics-port={metrics_port}",
        "--metrics-host=127.0.0.1",
        "--host=127.0.0.1",
    )
    config = folder / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules_file)],
                "scrape_configs": [
                    {
                        "job_name": "framewire",
                        "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
                    }
                ],
            }
        )
    )
    with (
        running(Process(server_command)) as server,
        running(
            Process(
                [
                    prometheus_binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                ]
            )
        ) as prometheus,
    ):
        server.wait_for_line(r"serving on ", timeout=120)
        prometheus.wait_for_line(r"Server is ready to receive web requests", timeout=60)
        agent = Process(
            [
                str(Path(sys.executable).with_name("edge-agent")),
                f"--server=127.0.0.1:{grpc_port}",
                f"--source={video}",
                "--stream-id=prometheus-check",
                "--fps=8",
                "--duration=15s",
                "--report-interval=1s",
                "--output=none",
            ]
        )
        with running(agent):
            assert agent.wait(120) == 0, agent.text()
        exported = {
            sample_name
            for line in scrape(metrics_port).splitlines()
            if line and not line.startswith("#")
            for sample_name in [re.split(r"[{ ]", line, maxsplit=1)[0]]
        }
        checker = Checker(prometheus_port, exported)
        # Rules run each second; wait until the slowest input, the agents' reports, is in.
        wait_until(
            lambda: bool(query(prometheus_port, "framewire:end_to_end_latency_seconds:p95")),
            30,
            "the end-to-end recording rule to have data",
            step=0.5,
        )
        yield checker
        assert server.stop() == 0, server.text()


def test_every_rule_expression_returns_data(traffic: Checker, rules_file: Path) -> None:
    for rule in rules(rules_file):
        if "record" in rule:
            traffic.check(f"recording rule {rule['record']}", rule["expr"])
            traffic.check(f"recorded series {rule['record']}", rule["record"])
        else:
            traffic.check(f"alert {rule['alert']}", with_bool(rule["expr"]))


def test_every_dashboard_expression_returns_data(traffic: Checker) -> None:
    expressions = dashboard_expressions()
    assert len(expressions) >= 12
    for where, expression in expressions:
        traffic.check(where, expression)
    variable_query = json.loads(DASHBOARD.read_text())["templating"]["list"][1]["definition"]
    assert set(METRIC_NAME.findall(variable_query)) <= traffic.exported


def test_an_expression_naming_a_missing_metric_fails(traffic: Checker) -> None:
    with pytest.raises(AssertionError, match="no such metric"):
        traffic.check("typo", "sum(rate(framewire_frames_procesed_total[30s]))")
    with pytest.raises(AssertionError, match="no data"):
        traffic.check("unscraped", 'sum(rate(framewire_frames_processed_total{job="nope"}[30s]))')
