"""deploy/prometheus and deploy/grafana hold together: the alert rules and the scrape config pass promtool's checks,
the rules' unit tests (alerts.test.yml) pass, every alert says how bad it is and what to do, and every metric a rule,
an annotation or a dashboard panel names is one a real ``Metrics`` registry exports once it has counted something;
every metric we export has a panel.

promtool comes with Debian's ``prometheus`` package (.ci/run installs it); without it the promtool tests skip, and
fail under CI=true."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from soulfra.errors import BusTimeoutError
from soulfra.metrics import Metrics

from .conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
TOKEN_FILE = "/run/secrets/soulfra/prometheus-token"
# Series Prometheus makes itself, or other exporters' that an annotation points to (not ours to export).
NOT_OURS = {"up", "node_filesystem_avail_bytes"}
SUFFIXES = ("", "_total", "_bucket", "_sum", "_count")
SOULFRA_NAME = re.compile(r"\bsoulfra_[a-z0-9_]+\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        unavailable("promtool", "not on PATH (apt-get install prometheus)")
    return found


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_checks_the_alert_rules() -> None:
    done = run("check", "rules", "--lint=all", "--lint-fatal", "alerts.yml", cwd=PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_promtool_runs_the_alert_rules_unit_tests() -> None:
    done = run("test", "rules", "alerts.test.yml", cwd=PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_unit_tests_can_fail(tmp_path: Path) -> None:
    """The same tests against rules whose stall alert ignores whether the world runs: the paused world fires."""
    shutil.copy(PROMETHEUS / "alerts.test.yml", tmp_path)
    rules = (PROMETHEUS / "alerts.yml").read_text(encoding="utf-8")
    assert "soulfra_world_running > 0\n" in rules
    (tmp_path / "alerts.yml").write_text(rules.replace("soulfra_world_running > 0\n", "soulfra_world_running >= 0\n"))
    done = run("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert 'world="paused"' in done.stdout + done.stderr


def test_promtool_checks_the_scrape_config_with_its_rules(tmp_path: Path) -> None:
    """The config as compose mounts it, the token file put where this test can make one."""
    token = tmp_path / "token"
    token.write_text("sft_for-the-check\n")
    config = (PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8")
    assert TOKEN_FILE in config
    (tmp_path / "prometheus.yml").write_text(config.replace(TOKEN_FILE, str(token)))
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path)
    done = run("check", "config", "--lint=all", "--lint-fatal", "prometheus.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout
    syntax = run("check", "config", "--syntax-only", "prometheus.yml", cwd=PROMETHEUS)
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr


def test_the_scrape_config_reads_every_process_of_the_compose_deployment() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {
        job["job_name"]: sorted(t for group in job["static_configs"] for t in group["targets"])
        for job in config["scrape_configs"]
    }
    assert targets == {
        "meta": ["meta:9464"], "runtime": ["runtime:9464"], "surface": ["surface:9464"],
        "protocol": ["protocol:9464"], "mirror": ["mirror:9464"], "api": ["api-1:8000", "api-2:8000"],
    }  # fmt: skip
    assert all(job["authorization"]["credentials_file"] == TOKEN_FILE for job in config["scrape_configs"])
    assert config["rule_files"] == ["alerts.yml"]


# -- what the rules and panels name ---------------------------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_says_how_bad_it_is_and_what_to_do() -> None:
    rules = _rules()
    assert {rule["alert"] for rule in rules} >= {
        "SoulfraWorldStalled", "SoulfraTickLagHigh", "SoulfraInstanceFailed", "SoulfraStorageErrors",
        "SoulfraLeaseLost", "SoulfraAuditVerifyFailing", "SoulfraDataDiskFilling", "SoulfraDataDiskAlmostFull",
    }  # fmt: skip
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        notes = rule["annotations"]
        assert set(notes) == {"summary", "description", "runbook"}, rule["alert"]
        assert len(notes["description"]) > 150, rule["alert"]


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not() -> None:
    cases = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text(encoding="utf-8"))["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    for rule in _rules():
        name = rule["alert"]
        assert any(c["alertname"] == name and c["exp_alerts"] for c in checks), f"{name} never fires in a test"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in checks), f"{name} always fires"


def observed_everything() -> Metrics:
    """A registry in which every metric has counted once: each labelled one under some label values."""
    metrics = Metrics(leases=lambda: ["w"], disk=ROOT)
    metrics.ticks.labels("w").inc()
    metrics.tick_duration.observe(0.001)
    metrics.tick_lag.labels("w").set(0.1)
    metrics.inputs.labels("ok").inc()
    metrics.god_commands.labels("FREEZE_TIME", "ok").inc()
    metrics.http_requests.labels("GET", "/readyz", "200").inc()
    metrics.http_duration.labels("/readyz").observe(0.002)
    metrics.instances.labels("running").set(1)
    metrics.snapshot_written("periodic", 1024, 0.01)
    metrics.audit_verified(ok=True)
    with pytest.raises(BusTimeoutError), metrics.bus_request("runtime", "status"):
        raise BusTimeoutError("no reply")
    metrics.world_running.labels("w").set(1)
    metrics.mind_calls.labels("reply").inc()
    metrics.mind_tokens.labels("prompt").inc(300)
    metrics.mind_duration.observe(1.5)
    return metrics


def exported_names(metrics: Metrics) -> set[str]:
    families = list(text_string_to_metric_families(metrics.render().decode()))
    return {sample.name for family in families for sample in family.samples} | {f.name for f in families}


def test_every_metric_an_alert_names_is_exported() -> None:
    text = (PROMETHEUS / "alerts.yml").read_text(encoding="utf-8")
    named = set(SOULFRA_NAME.findall(text))
    assert {"soulfra_ticks_total", "soulfra_world_running", "soulfra_data_disk_free_bytes"} <= named
    assert named - exported_names(observed_everything()) == set()
    for rule in _rules():  # and every name an expression reads is ours or Prometheus' own
        for name in re.findall(r"\b[a-z_][a-z0-9_]*(?=\s*[{\[])|\b[a-z_][a-z0-9_]*(?=\s*[><=!]=?\s*\d)", rule["expr"]):
            assert name.startswith("soulfra_") or name in NOT_OURS, (rule["alert"], name)


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((GRAFANA / "dashboards" / "soulfra.json").read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_every_metric_a_panel_names_is_exported_and_every_metric_has_a_panel() -> None:
    exprs = _dashboard_exprs()
    named = {name for expr in exprs for name in SOULFRA_NAME.findall(expr)}
    metrics = observed_everything()
    exported = exported_names(metrics)
    assert named - exported == set()
    families = {family.name for family in metrics.registry.collect()}
    shown = {family for family in families if any(family + suffix in named for suffix in SUFFIXES)}
    assert families - shown == set(), "give these a panel"


def test_the_grafana_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    assert [(d["type"], d["url"]) for d in source["datasources"]] == [("prometheus", "http://prometheus:9090")]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "soulfra.yml").read_text(encoding="utf-8"))
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((GRAFANA / "dashboards" / "soulfra.json").read_text(encoding="utf-8"))
    assert dashboard["uid"] == "soulfra"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
