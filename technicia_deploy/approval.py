"""The production approval: the form a human answers in the Prefect UI, and what counts as an approval.

The promotion suspends itself on :class:`ProductionApproval` (a Prefect ``RunInput``); the UI
builds its *Resume* form from this model's JSON schema (titles and descriptions shown per
field), and ``technicia-deploy approve`` sends the same fields through the API. The seed's two
notes that must hold before production ("documentation utilisateur finalisée", "quotas API
vérifiés") are confirmations on the form: an approval without both is refused.
"""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import Field

# The pause key of the production approval: fixed, so a promotion re-run after the resume gets the
# answer already given instead of asking again.
APPROVAL_KEY = "production-approval"


class ProductionApproval(RunInput):
    approver: str = Field(title="Approbateur / Approver", min_length=1,
                          description="Your name: it is recorded as the approver of the production deployment.")
    decision: Literal["approve", "reject"] = Field(
        title="Décision / Decision",
        description="approve: deploy this release to production now; reject: end the promotion, production untouched.")
    documentation_finalised: bool = Field(
        default=False, title="Documentation utilisateur finalisée",
        description="I confirm the user documentation is final for this release (required to approve).")
    quotas_verified: bool = Field(
        default=False, title="Quotas API vérifiés",
        description="I confirm the cloud API quotas were checked and are sufficient for production (required to approve).")
    comment: str = Field(default="", title="Commentaire / Comment", description="Optional; kept in the run history.")


def refusal(answer: ProductionApproval) -> str | None:
    """Why this answer does not allow production to be deployed, or None when it does."""
    if answer.decision == "reject":
        return f"production approval rejected by {answer.approver}" + (f": {answer.comment}" if answer.comment else "")
    missing = [label for label, given in (("documentation utilisateur finalisée", answer.documentation_finalised),
                                          ("quotas API vérifiés", answer.quotas_verified)) if not given]
    if missing:
        return (f"production approval by {answer.approver} refused: confirmation(s) missing: {', '.join(missing)} "
                "(both are required to approve)")
    return None
