"""The maintenance flows in deployments.yaml: registered by `prefect deploy --all` with their cron schedules in the
team's time zone, tagged so that the tracking document lists their runs. (The test server runs no scheduler: that the
scheduler creates their runs and a worker runs one is shown on the sandbox, tests/e2e/test_maintenance_certificates.py.)"""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from technicia_deploy.maintenance import MAINTENANCE_TAG, TEAM_TIMEZONE
from tests.unit.test_deployments_file import registered_deployments

REPO = Path(__file__).resolve().parents[2]
# (flow, deployment) -> cron, as deployments.yaml declares them.
MAINTENANCE = {
    ("maintenance-certificates", "certificates"): "30 3 * * *",
    ("maintenance-housekeeping", "housekeeping"): "0 4 * * 0",
    ("maintenance-backup", "backup"): "0 2 * * *",
    ("maintenance-restore-drill", "restore-drill"): "0 5 * * 0",
    ("maintenance-drift", "drift"): "30 6 * * *",
    ("smoke-api-keys", "daily"): "0 6 * * *",
}


def test_every_maintenance_deployment_is_declared_with_its_schedule_and_tags():
    declared = {d["name"]: d for d in yaml.safe_load((REPO / "deployments.yaml").read_text())["deployments"]}
    for (flow, name), cron in MAINTENANCE.items():
        d = declared[name]
        assert d["schedules"] == [{"cron": cron, "timezone": TEAM_TIMEZONE}], name
        assert {MAINTENANCE_TAG, f"flow:{flow}"} <= set(d["tags"]), name
        assert d["parameters"]["environment"] == ("test" if name == "restore-drill" else "all"), name
    # The flows behind them are the ones the entrypoints name.
    from flows.maintenance_certificates import maintenance_certificates
    from flows.maintenance_housekeeping import maintenance_housekeeping

    assert declared["certificates"]["entrypoint"] == "flows/maintenance_certificates.py:maintenance_certificates"
    assert maintenance_certificates.name == "maintenance-certificates"
    assert declared["housekeeping"]["entrypoint"] == "flows/maintenance_housekeeping.py:maintenance_housekeeping"
    assert maintenance_housekeeping.name == "maintenance-housekeeping"
    assert declared["restore-drill"]["parameters"]["source"] == "production"
    for name, module in (("backup", "maintenance_backup"), ("restore-drill", "maintenance_restore_drill"),
                         ("drift", "maintenance_drift")):
        path, _, function = declared[name]["entrypoint"].partition(":")
        assert path == f"flows/{module}.py" and function == module


def test_deploy_all_registers_them_with_their_schedules(prefect_server):
    by_name = registered_deployments(prefect_server)
    for key, cron in MAINTENANCE.items():
        d = by_name[key]
        schedules = [s["schedule"] for s in d["schedules"] if s["active"]]
        assert schedules == [{"cron": cron, "timezone": TEAM_TIMEZONE, "day_or": True}], (key, schedules)
        assert MAINTENANCE_TAG in d["tags"]
        # The run form explains every parameter.
        assert all(p.get("description") for p in d["parameter_openapi_schema"]["properties"].values()), key
