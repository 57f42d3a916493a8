"""The audit trail: one row per access to patient data (written by ``gateway/``) and one per
step of a model version's life (publish, pull, import, shadow, promote, activate; written where
the step happens, see :func:`model_event`).

Who (``actor``, ``auth_method``, ``roles``), what (``action``, ``method``, ``route``, ``path``,
``query``, ``study_uid``), when (``recorded_at``), from where (``source``, ``user_agent``) and
the outcome (``status``). Admins read it as FHIR AuditEvent resources. Rows are never updated.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from xraygate.core.models.base import utcnow


class AuditRecord(SQLModel, table=True):
    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    recorded_at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(default="", max_length=200, description="token subject / API key name")
    auth_method: str = Field(default="", max_length=16, description="jwt | api-key | session")
    roles: str = Field(default="", max_length=100, description="space-separated roles")
    action: str = Field(max_length=1, description="FHIR AuditEvent action: C R U D E")
    method: str = Field(max_length=8)
    route: str = Field(max_length=200, description="route template")
    path: str = Field(max_length=500)
    query: str = Field(default="", max_length=2000)
    study_uid: str | None = Field(default=None, max_length=64, index=True)
    source: str = Field(default="", max_length=64, description="client address")
    user_agent: str = Field(default="", max_length=200)
    status: int = Field(description="HTTP status answered")


MODEL_METHOD = "MODEL"  # ``method`` of model-lifecycle events (HTTP rows carry the HTTP verb)
_MODEL_ACTIONS = {"import": "C", "publish": "E", "pull": "E", "promote": "U", "refuse": "E"}


def model_event(
    step: str,
    model: str,
    *,
    actor: str,
    via: str = "cli",
    detail: str = "",
    status: int = 200,
    source: str = "",
) -> AuditRecord:
    """An audit row for one step of a model version's life.

    ``route`` is ``model <step>`` (publish, pull, import, shadow, activate, retire, rollback,
    promote, refuse), ``path`` the NAME:VERSION, ``query`` the detail (source URL, sha256, key
    id, reason), ``auth_method`` how it ran (cli, job, api); ``status`` 200 done, 403 refused
    (signature or digest check failed), 500 failed.
    """
    return AuditRecord(
        actor=actor[:200],
        auth_method=via[:16],
        action=_MODEL_ACTIONS.get(step, "U"),
        method=MODEL_METHOD,
        route=f"model {step}"[:200],
        path=model[:500],
        query=detail[:2000],
        source=source[:64],
        status=status,
    )
