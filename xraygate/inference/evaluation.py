"""Evaluating a registered version on a test set, and comparing a shadow with the active one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, select
from sqlmodel import col

from xraygate.core.config import Settings
from xraygate.core.db import read_session
from xraygate.core.models import ModelVersion, StudyResult
from xraygate.core.models.results import OOD_LIMIT
from xraygate.core.storage import ObjectStore
from xraygate.inference.manifest import Metrics
from xraygate.inference.registry import ModelCache
from xraygate.inference.training.data import load_directory
from xraygate.inference.training.demo import HELD_OUT_SEED, HELD_OUT_SIZE
from xraygate.inference.training.metrics import evaluate
from xraygate.inference.training.synthetic import dataset


def evaluate_version(
    settings: Settings, store: ObjectStore, version: ModelVersion, data: Path | None
) -> Metrics:
    model = ModelCache(store, settings.data_dir / "model-cache").get(version)
    spec = model.manifest.input
    if data is None:
        images, labels = dataset(HELD_OUT_SIZE, HELD_OUT_SEED, size=spec.height)
        source = f"synthetic held-out set (seed {HELD_OUT_SEED}, n={HELD_OUT_SIZE})"
    else:
        images, labels, _ = load_directory(data, spec)
        source = f"{data} (n={len(labels)})"
    readings = [model.read(images[i : i + 64]) for i in range(0, len(images), 64)]
    scores = np.concatenate([r.scores for r in readings])
    flagged = None
    if all(r.ood_distances is not None for r in readings):
        distances = np.concatenate(
            [r.ood_distances for r in readings if r.ood_distances is not None]
        )
        flagged = float((distances > OOD_LIMIT).mean())
    return evaluate(labels, scores, model.manifest.thresholds.high, source, ood_flagged=flagged)


def compare_results(engine: Engine, candidate: str, baseline: str) -> dict[str, Any]:
    """Agreement between two versions on the studies both have scored."""
    with read_session(engine) as session:
        rows = session.scalars(
            select(StudyResult).where(col(StudyResult.model_version).in_([candidate, baseline]))
        ).all()
    by_study: dict[str, dict[str, StudyResult]] = {}
    for row in rows:
        by_study.setdefault(row.study_instance_uid, {})[row.model_version] = row
    pairs = [(v[baseline], v[candidate]) for v in by_study.values() if len(v) == 2]
    if not pairs:
        return {"studies_compared": 0}
    same = sum(a.category == b.category for a, b in pairs)
    diffs = [
        abs(a.score - b.score) for a, b in pairs if a.score is not None and b.score is not None
    ]
    changes: dict[str, int] = {}
    for a, b in pairs:
        if a.category != b.category:
            key = f"{a.category}->{b.category}"
            changes[key] = changes.get(key, 0) + 1
    return {
        "baseline": baseline,
        "candidate": candidate,
        "studies_compared": len(pairs),
        "category_agreement": round(same / len(pairs), 4),
        "mean_abs_score_difference": round(float(np.mean(diffs)), 4) if diffs else None,
        "category_changes": changes,
    }
