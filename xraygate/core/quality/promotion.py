"""The promotion rule: activate a shadow version when clinicians' labels say it is better.

On at least ``min_paired`` labelled studies read by both the active version and the shadow one,
the shadow is promoted when its **agreement is not worse** and its **sensitivity at the high
threshold is higher** (point estimates on the same studies; the report shows the paired
bootstrap intervals). Off unless ``XRAYGATE_MODEL_AUTO_PROMOTE`` is set; ``xraygate model
promote`` applies it by hand (or ``--dry-run`` shows the verdict). Each promotion is audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from xraygate.core.config import ModelPolicy
from xraygate.core.db import write_session
from xraygate.core.models import ModelState
from xraygate.core.models.audit import model_event
from xraygate.core.models.results import set_state
from xraygate.core.quality.measures import Json, paired
from xraygate.core.quality.report import emitting_label, load, versions


@dataclass(frozen=True)
class Verdict:
    baseline: str
    candidate: str
    n_paired: int
    agreement: tuple[float | None, float | None]  # baseline, candidate
    sensitivity: tuple[float | None, float | None]
    promote: bool
    reason: str


def verdicts(engine: Engine, min_paired: int, policy: ModelPolicy = "active") -> list[Verdict]:
    """The rule's verdict for every shadow version against the emitting one."""
    info = versions(engine)
    baseline = emitting_label(engine, policy)
    if baseline is None:
        return []
    shadows = [v.label for v in info.values() if v.state == ModelState.SHADOW]
    base_rows = [s.row for s in load(engine, model=baseline)]
    out = []
    for label in shadows:
        rows = [s.row for s in load(engine, model=label)]
        figures = paired(base_rows, rows, intervals=False)
        out.append(_verdict(baseline, label, figures, min_paired))
    return out


def _verdict(baseline: str, candidate: str, figures: Json, min_paired: int) -> Verdict:
    n = int(figures["n_paired"])
    a, b = figures["baseline_figures"], figures["candidate_figures"]
    agree = (a["agreement"]["value"], b["agreement"]["value"])
    sens = (a["sensitivity"]["value"], b["sensitivity"]["value"])
    if n < min_paired:
        return Verdict(baseline, candidate, n, agree, sens, False, f"{n} < {min_paired} paired")
    if None in agree or None in sens:
        return Verdict(baseline, candidate, n, agree, sens, False, "no labels of both kinds")
    if agree[1] < agree[0]:
        reason = f"agreement worse ({agree[1]:.3f} < {agree[0]:.3f})"
        return Verdict(baseline, candidate, n, agree, sens, False, reason)
    if sens[1] <= sens[0]:
        reason = f"sensitivity not higher ({sens[1]:.3f} <= {sens[0]:.3f})"
        return Verdict(baseline, candidate, n, agree, sens, False, reason)
    reason = (
        f"on {n} paired labelled studies: agreement {agree[1]:.3f} >= {agree[0]:.3f}, "
        f"sensitivity {sens[1]:.3f} > {sens[0]:.3f}"
    )
    return Verdict(baseline, candidate, n, agree, sens, True, reason)


def promote(engine: Engine, verdict: Verdict, *, actor: str, via: str) -> None:
    """Activate the verdict's candidate (the baseline is retired) and audit why."""
    name, _, version = verdict.candidate.partition(":")
    with write_session(engine) as session:
        set_state(session, name, version, ModelState.ACTIVE)
        detail = f"replaces {verdict.baseline}: {verdict.reason}"
        session.add(model_event("promote", verdict.candidate, actor=actor, via=via, detail=detail))
