"""A model version's manifest: what the model expects, how to read its output, how good it is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from xraygate.core.errors import ModelRegistryError
from xraygate.inference.ood import OodReference

DEMO_NOTICE = (
    "DEMONSTRATION MODEL trained on synthetic images: not a medical device, not for clinical use."
)


class InputSpec(BaseModel):
    height: int = Field(ge=16, le=1024)
    width: int = Field(ge=16, le=1024)
    channels: Literal[1] = 1
    windowing: Literal["voi-or-percentile", "percentile"] = "voi-or-percentile"
    percentiles: tuple[float, float] = (0.5, 99.5)


class Thresholds(BaseModel):
    high: float = Field(0.80, ge=0, le=1, description="score above: high risk")
    low: float = Field(0.60, ge=0, le=1, description="score below: low risk")

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.low > self.high:
            raise ValueError("thresholds.low must not exceed thresholds.high")
        return self


class Metrics(BaseModel):
    auroc: float | None = None
    sensitivity_at_high: float | None = None
    specificity_at_high: float | None = None
    brier: float | None = None
    ece: float | None = None
    ood_flagged: float | None = Field(
        None, description="share of the evaluation set the OOD gate flags"
    )
    evaluated_on: str = ""


class Reference(BaseModel):
    """What the version saw in training: the OOD gate's reference and, for drift, the
    distribution of its scores on the validation split (101 quantiles, 0 to 100 %)."""

    ood: OodReference | None = None
    score_quantiles: list[float] = Field(default_factory=list, max_length=101)
    validation_n: int = Field(0, ge=0)


class Manifest(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    version: str = Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9._-]+$")
    artifact: str = Field("model.keras", description="file name of the Keras model")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input: InputSpec
    thresholds: Thresholds = Thresholds()
    training_data: str
    metrics: Metrics = Metrics()
    reference: Reference | None = Field(
        None, description="training reference (OOD gate, drift); absent in older manifests"
    )
    intended_use: str
    demo: bool = False

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}"

    def dumps(self) -> str:
        """Indented JSON, with each list of numbers on one line (the reference's matrices)."""
        text = self.model_dump_json(indent=2)
        return _NUMBER_LIST.sub(_one_line, text)


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9][0-9.eE+-]*(?:,\s*-?[0-9][0-9.eE+-]*)*)\s*\]")


def _one_line(match: re.Match[str]) -> str:
    return "[" + ", ".join(v.strip() for v in match.group(1).split(",")) + "]"


def load_manifest(path: Path) -> Manifest:
    try:
        return parse_manifest(path.read_text())
    except OSError as exc:
        raise ModelRegistryError(f"cannot read manifest {path.name}: {exc.strerror}") from exc


def parse_manifest(text: str) -> Manifest:
    try:
        return Manifest.model_validate(json.loads(text))
    except (ValidationError, ValueError) as exc:
        raise ModelRegistryError(f"invalid model manifest: {exc}") from exc
