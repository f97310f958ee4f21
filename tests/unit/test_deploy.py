"""The production deployment in deploy/ (no container engine here: what can be checked
without one): the compose file runs every role from the image, after the migration, with
as many partitions as workers; Prometheus scrapes every Heddle process; the image holds
every package Heddle installs; Grafana is provisioned with the dashboard."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from infra.runtime import ALL_ROLES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def heddle_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image") == "heddle:local"
    }


def test_every_role_runs_in_a_service_of_its_own_after_the_migration() -> None:
    roles: dict[str, str] = {}
    for name, service in heddle_services().items():
        command = service["command"]
        if command[0] == "serve":
            for role in command[command.index("--role") + 1 :: 2]:
                roles[role] = name
            assert service["depends_on"]["migrate"] == {
                "condition": "service_completed_successfully"
            }, name
    assert sorted(roles) == sorted(ALL_ROLES)
    assert compose()["services"]["migrate"]["command"] == ["migrate"]
    api = [n for n, s in heddle_services().items() if "--no-api" not in s.get("command", [])]
    assert "api" in api
    assert "8080:8080" in compose()["services"]["api"]["ports"]


def test_there_are_at_least_as_many_partitions_as_workers() -> None:
    worker = heddle_services()["worker"]
    partitions = int(worker["environment"]["HEDDLE_PARTITIONS"])
    assert worker["deploy"]["replicas"] <= partitions


def test_prometheus_scrapes_the_api_with_a_key_and_every_other_role_on_its_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["heddle-api"]
    assert api["static_configs"][0]["targets"] == ["api:8080"]
    assert api["authorization"]["credentials_file"] == "/keys/prometheus.key"
    roles = jobs["heddle-roles"]["dns_sd_configs"][0]
    no_api = {n for n, s in heddle_services().items() if "--no-api" in s.get("command", [])}
    assert set(roles["names"]) == no_api
    ports = {s["environment"]["HEDDLE_METRICS_PORT"] for s in heddle_services().values()}
    assert {str(roles["port"])} == ports
    made = compose()["services"]["metrics-key"]["command"][0]
    assert "--scope admin" in made
    assert "/keys/prometheus.key" in made


def test_the_image_holds_every_package_heddle_installs_and_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \1$", dockerfile, re.MULTILINE))
    assert packages <= copied
    [install] = re.findall(r"^RUN uv sync (.*)$", dockerfile, re.MULTILINE)
    assert "--locked" in install.split()  # the versions of uv.lock
    assert "embedded" not in install  # no dev servers in production
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users
    assert users[-1] not in ("root", "0")


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus() -> None:
    grafana = compose()["services"]["grafana"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounted["./grafana/heddle.json"].startswith("/var/lib/grafana/dashboards/")
    source = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"][0]
    dashboard = json.loads((DEPLOY / "grafana" / "heddle.json").read_text())
    uids = {
        target["datasource"]["uid"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    assert uids == {source["uid"]}
