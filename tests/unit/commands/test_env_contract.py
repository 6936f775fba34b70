"""The .env contract: facts in (the .env's file fact + the release's .env.example) -> the names each side lacks,
the exact error and summary out; the fact script run for real in a temporary release directory."""

from __future__ import annotations

import subprocess

import pytest

from technicia_deploy import envfile
from technicia_deploy.commands import env_contract
from technicia_deploy.commands.files import FileFact
from technicia_deploy.commands.shell import FACT_PRELUDE, FactError, render_sections

RELEASE = "/opt/technicia/releases/v1.0.0-0123456789ab"
ENV = f"{RELEASE}/.env"
EXAMPLE = f"{RELEASE}/.env.example"
DIGEST = "ab" * 32
PROVIDED = ("GOOGLE_CLOUD_PROJECT", "DOCUMENTAI_PROCESSOR_ID", "ANTHROPIC_API_KEY")

# The sample application's .env.example before the names were agreed (DOCUMENTAI_PROCESSOR, no model variables).
OLD_EXAMPLE = """\
# The API keys of one environment. The deployment writes .env from its secret store;
# .env is never committed. One line per variable, no quotes.
GOOGLE_CLOUD_PROJECT=
# The Google service account key (Document AI + Vision), as one line of JSON.
GOOGLE_APPLICATION_CREDENTIALS_JSON=
DOCUMENTAI_LOCATION=eu
# projects/<project>/locations/<location>/processors/<id>
DOCUMENTAI_PROCESSOR=
VOYAGE_API_KEY=
ANTHROPIC_API_KEY=
"""


def facts(example: str | None, env_file=("600 deploy deploy", DIGEST)) -> env_contract.EnvFacts:
    output = render_sections({
        "file.0": ("\n".join(env_file), 0) if env_file else ("absent", 0),
        "example": ("absent", 0) if example is None else ("present\n" + example, 0),
    })
    return env_contract.parse_env_facts(ENV, EXAMPLE, output)


def test_example_path_is_next_to_the_env_file():
    assert env_contract.example_path(ENV) == EXAMPLE


def test_exact_fact_command():
    assert env_contract.env_facts_command(ENV, EXAMPLE).splitlines() == [
        FACT_PRELUDE,
        "echo '@@technicia-fact file.0'",
        "{",
        f"if [ -f {ENV} ]; then stat -L -c '%a %U %G' {ENV} && sha256sum < {ENV} | cut -d' ' -f1; else echo absent; fi",
        "} 2>/dev/null",
        'echo "@@technicia-fact-rc $?"',
        "echo '@@technicia-fact example'",
        "{",
        f"if [ -e {EXAMPLE} ]; then echo present && cat {EXAMPLE}; else echo absent; fi",
        "} 2>/dev/null",
        'echo "@@technicia-fact-rc $?"',
    ]


def test_facts_give_the_env_file_and_the_example_text():
    got = facts("A=1\n\n# c\nB=\n")
    assert got == env_contract.EnvFacts(FileFact(ENV, True, DIGEST, 0o600, "deploy", "deploy"), EXAMPLE, "A=1\n\n# c\nB=\n")
    assert facts(None, env_file=None) == env_contract.EnvFacts(FileFact.absent(ENV), EXAMPLE, None)


def test_unreadable_example_is_a_fact_error():
    output = render_sections({"file.0": ("absent", 0), "example": ("present", 1)})
    with pytest.raises(FactError, match=r"^/opt/technicia/releases/v1.0.0-0123456789ab/.env.example: cannot be read \(status 1\)$"):
        env_contract.parse_env_facts(ENV, EXAMPLE, output)


def test_declared_names_skip_comments_blanks_and_repeats():
    text = "# header\n\nA=1\n  export B=two words\nC\nA=again\n_D9=\n"
    assert env_contract.declared_names(text, EXAMPLE) == ("A", "B", "C", "_D9")


def test_a_line_that_declares_nothing_names_the_file_and_line_not_its_content():
    with pytest.raises(env_contract.ContractError) as caught:
        env_contract.declared_names("A=1\nsk-live-pasted secret\n", EXAMPLE)
    assert str(caught.value) == (f"{EXAMPLE} line 2: not a variable declaration (expected NAME=value or a # comment)")
    assert "sk-live" not in str(caught.value)


def test_agreeing_sides_pass_with_a_summary():
    result = env_contract.contract(facts("GOOGLE_CLOUD_PROJECT=\nDOCUMENTAI_PROCESSOR_ID=\nANTHROPIC_API_KEY=\n"), PROVIDED)
    assert result == env_contract.Contract(EXAMPLE, PROVIDED, PROVIDED)
    assert result.problem() is None
    assert result.summary() == "3 variables match .env.example"


def test_order_does_not_matter():
    result = env_contract.contract(facts("ANTHROPIC_API_KEY=\nGOOGLE_CLOUD_PROJECT=\nDOCUMENTAI_PROCESSOR_ID=\n"), PROVIDED)
    assert result.problem() is None


def test_a_release_without_example_is_accepted_and_says_so():
    result = env_contract.contract(facts(None), PROVIDED)
    assert (result.found, result.not_provided, result.not_declared, result.problem()) == (False, [], [], None)
    assert result.summary() == "no contract found (no .env.example in the release): variable names not checked"


def test_a_variable_the_application_expects_and_the_pipeline_does_not_provide():
    result = env_contract.contract(facts("GOOGLE_CLOUD_PROJECT=\nDOCUMENTAI_PROCESSOR_ID=\nANTHROPIC_API_KEY=\n"
                                         "QDRANT_API_KEY=\n"), PROVIDED)
    assert result.not_provided == ["QDRANT_API_KEY"] and result.not_declared == []
    assert result.problem() == (
        f"{EXAMPLE} and the pipeline's .env disagree: the application expects QDRANT_API_KEY, which the pipeline "
        "does not provide. Rename the variable in the application's .env.example or in the pipeline "
        "(technicia_deploy/envfile.py ENV_VARIABLES); .env not written, no container restarted")


def test_a_variable_the_pipeline_provides_and_the_application_does_not_declare():
    result = env_contract.contract(facts("GOOGLE_CLOUD_PROJECT=\nDOCUMENTAI_PROCESSOR_ID=\n"), PROVIDED)
    assert result.problem() == (
        f"{EXAMPLE} and the pipeline's .env disagree: the pipeline provides ANTHROPIC_API_KEY, which .env.example "
        "does not declare. Rename the variable in the application's .env.example or in the pipeline "
        "(technicia_deploy/envfile.py ENV_VARIABLES); .env not written, no container restarted")


def test_the_processor_name_mismatch_that_went_unnoticed():
    # The pipeline's real variables against the sample application's former .env.example: both directions named.
    result = env_contract.contract(facts(OLD_EXAMPLE), envfile.ENV_VARIABLES)
    assert result.not_provided == ["DOCUMENTAI_PROCESSOR"]
    assert result.not_declared == ["DOCUMENTAI_PROCESSOR_ID", "VOYAGE_MODEL", "ANTHROPIC_MODEL"]
    assert result.problem() == (
        f"{EXAMPLE} and the pipeline's .env disagree: the application expects DOCUMENTAI_PROCESSOR, which the "
        "pipeline does not provide; the pipeline provides DOCUMENTAI_PROCESSOR_ID, VOYAGE_MODEL, ANTHROPIC_MODEL, "
        "which .env.example does not declare. Rename the variable in the application's .env.example or in the "
        "pipeline (technicia_deploy/envfile.py ENV_VARIABLES); .env not written, no container restarted")


def test_fact_script_runs_here_against_a_release_directory(tmp_path):
    release = tmp_path / "release dir"
    release.mkdir()
    env, example = str(release / ".env"), str(release / ".env.example")
    command = env_contract.env_facts_command(env, example)

    def run() -> env_contract.EnvFacts:
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return env_contract.parse_env_facts(env, example, done.stdout)

    assert run() == env_contract.EnvFacts(FileFact.absent(env), example, None)
    (release / ".env.example").write_text("# c\nA=1\nB=")  # no final newline: the status line must not glue to it
    (release / ".env").write_text("A=secret\nB=x\n")
    got = run()
    assert got.example == "# c\nA=1\nB=\n"
    assert got.env_file.exists and got.env_file.sha256 == envfile.digest("A=secret\nB=x\n")
    assert "secret" not in subprocess.run(["bash", "-c", command], capture_output=True, text=True).stdout
    assert env_contract.contract(got, ("A", "B")).problem() is None
