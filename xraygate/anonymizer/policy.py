"""Which studies go to the central retraining bucket, and with which label.

Default (triage policy): indeterminate studies, low-confidence ones (score within
``export_margin`` of a triage threshold), and any study a clinician corrected. A study's label
is the clinician's finding when there is one; otherwise the model's committed category is
recorded as a model label (``label_source=model``) and the image is kept out of the training
folders.
"""

from __future__ import annotations

from dataclasses import dataclass

from xraygate.core.config import Settings
from xraygate.core.models import Category, Feedback, StudyResult
from xraygate.core.models.deid import Agreement


@dataclass(frozen=True)
class Decision:
    selected: bool
    reason: str


@dataclass(frozen=True)
class Label:
    source: str  # clinician | model | none
    value: str  # PNEUMONIA | NORMAL | ""

    @property
    def folder(self) -> str:
        """Training folder: only clinician labels train a model."""
        return self.value if self.source == "clinician" and self.value else "UNLABELED"


@dataclass(frozen=True)
class ExportPolicy:
    enabled: bool = True
    categories: frozenset[str] = frozenset({Category.INDETERMINATE.value})
    margin: float = 0.05
    corrected: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> ExportPolicy:
        return cls(
            enabled=settings.export_enabled,
            categories=frozenset(c.lower() for c in settings.export_categories),
            margin=max(0.0, settings.export_margin),
            corrected=settings.export_corrected,
        )

    def decide(self, result: StudyResult, feedback: Feedback | None) -> Decision:
        if not self.enabled:
            return Decision(False, "export disabled")
        if result.shadow:
            return Decision(False, "shadow result")
        if self.corrected and feedback is not None and feedback.agreement == Agreement.DISAGREE:
            return Decision(True, "clinician corrected the model")
        if result.category in self.categories:
            return Decision(True, f"category {result.category}")
        if result.score is not None and self.margin > 0 and self._near_threshold(result):
            return Decision(True, "low confidence: score near a triage threshold")
        return Decision(False, f"category {result.category} not selected by the export policy")

    def _near_threshold(self, result: StudyResult) -> bool:
        assert result.score is not None
        bounds = [float(v) for k, v in result.thresholds.items() if k in ("high", "low")]
        return any(abs(result.score - bound) <= self.margin for bound in bounds)


def label_for(result: StudyResult, feedback: Feedback | None) -> Label:
    if feedback is not None:
        return Label("clinician", feedback.label)
    if result.category == Category.HIGH:
        return Label("model", "PNEUMONIA")
    if result.category == Category.LOW:
        return Label("model", "NORMAL")
    return Label("none", "")
