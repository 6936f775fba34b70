"""The promotion commands refuse what they must before any flow runs, in one error line."""

from __future__ import annotations

from technicia_deploy.cli import main


def test_deploy_production_is_refused_with_the_way_to_do_it(prefect_server, capsys):
    assert main(["deploy", "production", "--version", "v1.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: `deploy production` refused: production is deployed only by an approved promotion")
    assert "technicia-deploy promote VERSION" in err


def test_approve_names_a_bad_run_id(prefect_server, capsys):
    assert main(["approve", "not-a-run", "--approver", "alice"]) == 2
    assert "'not-a-run' is not a flow run id" in capsys.readouterr().err
    assert main(["approve", "00000000-0000-0000-0000-000000000000", "--approver", "alice"]) == 2
    assert "no flow run 00000000-0000-0000-0000-000000000000 on this Prefect server" in capsys.readouterr().err


def test_commands_without_a_server_say_so(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("TECHNICIA_SANDBOX_DIR", str(tmp_path / "no-sandbox"))
    for argv in (["report"], ["promote", "v1.0.0"], ["rollback", "test"], ["dns", "prepare", "production"]):
        assert main(argv) == 2, argv
        assert "error: no Prefect server: set PREFECT_API_URL, or run `technicia-deploy sandbox up`" in capsys.readouterr().err
