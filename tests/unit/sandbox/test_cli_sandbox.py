"""``technicia-deploy sandbox --help`` and its actions."""

from __future__ import annotations

import pytest

from technicia_deploy.cli import build_parser


@pytest.mark.parametrize("action", ["up", "down", "status"])
def test_each_action_has_help_and_a_dir_option(action, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["sandbox", action, "--help"])
    assert exit_.value.code == 0
    assert "--dir" in capsys.readouterr().out


def test_dir_is_parsed():
    args = build_parser().parse_args(["sandbox", "status", "--dir", "/tmp/x"])
    assert args.dir == "/tmp/x" and callable(args.func)


def test_status_of_a_sandbox_never_brought_up(tmp_path, capsys):
    from technicia_deploy.cli import main

    assert main(["sandbox", "status", "--dir", str(tmp_path / "sbx")]) == 0
    assert "not up" in capsys.readouterr().out


def test_up_without_docker_says_what_is_missing_and_makes_nothing(tmp_path, monkeypatch, capsys):
    from technicia_deploy.cli import main

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert main(["sandbox", "up", "--dir", str(tmp_path / "sbx")]) == 1
    err = capsys.readouterr().err
    assert "apt-get install docker.io" in err and "make bootstrap" in err
    assert "Traceback" not in err
