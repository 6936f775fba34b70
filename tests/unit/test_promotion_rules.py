"""Who may deploy what (technicia_deploy.promotion.deploy_refusal) and what counts as an approval."""

from __future__ import annotations

import pytest

from technicia_deploy.approval import ProductionApproval, refusal
from technicia_deploy.promotion import Caller, deploy_refusal

SHA = "0123456789abcdef0123456789abcdef01234567"
APPROVED = ProductionApproval(approver="Alice", decision="approve", documentation_finalised=True, quotas_verified=True)


def caller(**kw) -> Caller:
    base = dict(deployment_environment=None, deployment_name=None, parent_flow=None, parent_running=False,
                parent_sha=None, approval=None)
    return Caller(**{**base, **kw})


PROMOTION = dict(parent_flow="promote-release", parent_running=True, parent_sha=SHA[:12])


@pytest.mark.parametrize("environment, how, expected", [
    ("test", caller(), None),  # CLI or in-process
    ("staging", caller(deployment_environment="staging", deployment_name="staging"), None),
    ("staging", caller(**PROMOTION), None),
    ("production", caller(**PROMOTION, approval=APPROVED), None),
    # a deployment's custom run with another environment
    ("production", caller(deployment_environment="staging", deployment_name="staging"),
     "the 'staging' deployment deploys staging only, not production"),
    ("test", caller(deployment_environment="staging", deployment_name="staging"), "deploys staging only, not test"),
    # production outside a promotion: CLI / in-process, or a subflow of something else
    ("production", caller(), "production is deployed only by an approved promotion"),
    ("production", caller(parent_flow="other", parent_running=True), "only by an approved promotion"),
    # a retry of an old promotion's production run: the promotion has ended
    ("production", caller(**{**PROMOTION, "parent_running": False}, approval=APPROVED), "no longer running"),
    ("production", caller(**{**PROMOTION, "parent_sha": "ffffffffffff"}, approval=APPROVED),
     "was for commit ffffffffffff, not 0123456789ab"),
    ("production", caller(**PROMOTION), "has no production approval"),
    ("production", caller(**PROMOTION, approval=APPROVED.model_copy(update={"decision": "reject"})), "rejected by Alice"),
    ("production", caller(**PROMOTION, approval=APPROVED.model_copy(update={"quotas_verified": False})),
     "confirmation(s) missing: quotas API vérifiés"),
])
def test_deploy_refusal(environment, how, expected):
    why = deploy_refusal(environment, SHA, how)
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why


def test_an_approval_needs_both_confirmations():
    assert refusal(APPROVED) is None
    neither = APPROVED.model_copy(update={"documentation_finalised": False, "quotas_verified": False})
    assert "documentation utilisateur finalisée, quotas API vérifiés" in refusal(neither)
    assert refusal(APPROVED.model_copy(update={"decision": "reject", "comment": "not today"})) == \
        "production approval rejected by Alice: not today"


def test_the_form_is_the_seeds_confirmations():
    schema = ProductionApproval.model_json_schema()
    assert schema["properties"]["documentation_finalised"]["title"] == "Documentation utilisateur finalisée"
    assert schema["properties"]["quotas_verified"]["title"] == "Quotas API vérifiés"
    assert set(schema["required"]) == {"approver", "decision"}
    assert all(p.get("description") for p in schema["properties"].values())
