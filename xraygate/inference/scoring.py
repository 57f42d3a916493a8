"""From image scores to a study's triage category.

Rule: a study's score is the **maximum** over its applicable (frontal chest) images, so one image
showing an opacity is enough to escalate. The category uses the model version's thresholds:
``high`` when score > thresholds.high (default 0.80), ``low`` when score < thresholds.low
(default 0.60), ``indeterminate`` in between. A study without any applicable image is
``not-applicable`` with the reasons recorded.

Images the out-of-distribution gate refused have no score: a study with such an image is never
``low`` (the model cannot rule out what it could not read); with no other image it is
``indeterminate`` without a score, the reason saying so. Its OOD distance is the largest of its
images'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xraygate.core.models import Category, InstanceResult
from xraygate.core.models.results import OOD_REASON
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
    ood_distance: float | None = None


def aggregate(results: Sequence[InstanceResult], thresholds: Thresholds) -> StudyScore:
    read = [r for r in results if r.applicable and r.score is not None]
    refused = [r for r in results if r.applicable and r.score is None]  # out of distribution
    uids = sorted(r.sop_instance_uid for r in results)
    measured = [r.ood_distance for r in results if r.applicable and r.ood_distance is not None]
    distance = max(measured) if measured else None
    note = ""
    if refused:
        note = f"{OOD_REASON}: {len(refused)} of {len(read) + len(refused)} image(s)"
        note += f", distance {distance:.2f}" if distance is not None else ""
    if not read and not refused:
        reasons = sorted({r.reason for r in results if r.reason})
        return StudyScore(None, Category.NOT_APPLICABLE, "; ".join(reasons)[:500], uids)
    if not read:
        return StudyScore(None, Category.INDETERMINATE, note, uids, distance)
    score = max(float(r.score) for r in read if r.score is not None)
    category = categorize(score, thresholds)
    if not refused:
        return StudyScore(score, category, "", uids, distance)
    if category == Category.LOW:
        category = Category.INDETERMINATE
    return StudyScore(score, category, note, uids, distance)
