"""From image scores to a study's triage category.

Rule: a study's score is the **maximum** over its applicable (frontal chest) images, so one image
showing an opacity is enough to escalate. The category uses the model version's thresholds:
``high`` when score > thresholds.high (default 0.80), ``low`` when score < thresholds.low
(default 0.60), ``indeterminate`` in between. A study without any applicable image is
``not-applicable`` with the reasons recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xraygate.core.models import Category, InstanceResult
from xraygate.inference.manifest import Thresholds


def categorize(score: float, thresholds: Thresholds) -> Category:
    if score > thresholds.high:
        return Category.HIGH
    if score < thresholds.low:
        return Category.LOW
    return Category.INDETERMINATE


@dataclass(frozen=True)
class StudyScore:
    score: float | None
    category: Category
    reason: str
    instance_uids: list[str]


def aggregate(results: Sequence[InstanceResult], thresholds: Thresholds) -> StudyScore:
    read = [r for r in results if r.applicable and r.score is not None]
    uids = sorted(r.sop_instance_uid for r in results)
    if not read:
        reasons = sorted({r.reason for r in results if r.reason})
        return StudyScore(None, Category.NOT_APPLICABLE, "; ".join(reasons)[:500], uids)
    score = max(float(r.score) for r in read if r.score is not None)
    return StudyScore(score, categorize(score, thresholds), "", uids)
