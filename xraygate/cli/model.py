"""Model registry and results commands: ``xraygate model ...`` and ``xraygate results``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from xraygate.core.config import Settings
    from xraygate.core.models import ModelState

from xraygate.cli.core import fail
from xraygate.core.errors import XraygateError

model_app = typer.Typer(
    help="Model versions: list, import, activate, evaluate, compare, train, report, publish, pull."
)


def register(app: typer.Typer) -> None:
    from xraygate.cli import model_loop

    model_loop.register(model_app)
    app.add_typer(model_app, name="model")
    app.command("results")(results)


def _engine(settings: Settings) -> Any:
    from xraygate.cli import database

    return database.engine(settings)


def _split(ref: str) -> tuple[str, str]:
    name, sep, version = ref.partition(":")
    if not sep:
        raise fail(f"give the model as NAME:VERSION, not {ref!r}")
    return name, version


@model_app.command("list")
def list_models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Registered versions with state, AUROC and artifact sha256."""
    from sqlalchemy import select
    from sqlmodel import col

    from xraygate.core import db
    from xraygate.core.config import get_settings
    from xraygate.core.models import ModelVersion

    engine = _engine(get_settings())
    with db.read_session(engine) as session:
        rows = list(session.scalars(select(ModelVersion).order_by(col(ModelVersion.id))))
    data = [
        {
            "model": r.label,
            "state": r.state,
            "auroc": r.auroc,
            "sha256": r.sha256,
            "demo": bool(r.manifest.get("demo")),
        }
        for r in rows
    ]
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for item in data:
        demo = "  [DEMO - not for clinical use]" if item["demo"] else ""
        typer.echo(
            f"{item['model']:<32} {item['state']:<10} auroc={item['auroc']} "
            f"sha256={str(item['sha256'])[:12]}{demo}"
        )


@model_app.command("import")
def import_(directory: Annotated[Path, typer.Argument(help="Folder with manifest.json.")]) -> None:
    """Register a model version (as a candidate) after verifying manifest and sha256."""
    from xraygate.cli.model_loop import actor
    from xraygate.core import db
    from xraygate.core.config import get_settings
    from xraygate.core.models.audit import model_event
    from xraygate.core.storage import store_from_settings
    from xraygate.inference.registry import import_model

    settings = get_settings()
    engine = _engine(settings)
    try:
        row = import_model(engine, store_from_settings(settings), directory)
        with db.write_session(engine) as session:
            detail = f"from {directory} sha256={row.sha256}"
            session.add(model_event("import", row.label, actor=actor(), detail=detail))
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"imported {row.label} ({row.state})")


def _transition(ref: str, state: ModelState) -> None:
    from xraygate.cli.model_loop import actor
    from xraygate.core import db
    from xraygate.core.config import get_settings
    from xraygate.core.models.audit import model_event
    from xraygate.core.models.results import set_state

    name, version = _split(ref)
    engine = _engine(get_settings())
    try:
        with db.write_session(engine) as session:
            row = set_state(session, name, version, state)
            label, new_state = row.label, row.state
            step = {"active": "activate", "shadow": "shadow", "retired": "retire"}.get(state, state)
            session.add(model_event(step, label, actor=actor()))
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"{label} is now {new_state}")


@model_app.command("activate")
def activate(ref: Annotated[str, typer.Argument(help="NAME:VERSION")]) -> None:
    """Make a version the one whose results are emitted (the previous one is retired)."""
    from xraygate.core.models import ModelState

    _transition(ref, ModelState.ACTIVE)


@model_app.command("shadow")
def shadow(ref: Annotated[str, typer.Argument(help="NAME:VERSION")]) -> None:
    """Score with a version on live traffic without emitting its results."""
    from xraygate.core.models import ModelState

    _transition(ref, ModelState.SHADOW)


@model_app.command("retire")
def retire(ref: Annotated[str, typer.Argument(help="NAME:VERSION")]) -> None:
    """Stop using a version."""
    from xraygate.core.models import ModelState

    _transition(ref, ModelState.RETIRED)


@model_app.command("rollback")
def rollback_cmd() -> None:
    """Re-activate the version that was active before the current one."""
    from xraygate.core import db
    from xraygate.core.config import get_settings
    from xraygate.core.models.results import rollback

    engine = _engine(get_settings())
    from xraygate.cli.model_loop import actor
    from xraygate.core.models.audit import model_event

    try:
        with db.write_session(engine) as session:
            label = rollback(session).label
            session.add(model_event("rollback", label, actor=actor()))
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"rolled back: {label} is active")


@model_app.command("evaluate")
def evaluate_cmd(
    ref: Annotated[str | None, typer.Argument(help="NAME:VERSION [default: emitting]")] = None,
    data: Annotated[Path | None, typer.Option(help="NORMAL/ + PNEUMONIA/ folder.")] = None,
    record: Annotated[
        bool, typer.Option(help="Store the measured AUROC (used by the best-auroc policy).")
    ] = True,
) -> None:
    """AUROC, sensitivity/specificity at the high threshold and calibration on a test set
    (default: the held-out synthetic set, never used in training)."""
    from xraygate.core import db
    from xraygate.core.config import get_settings
    from xraygate.core.models.results import find_version
    from xraygate.core.storage import store_from_settings
    from xraygate.inference.evaluation import evaluate_version
    from xraygate.inference.registry import emitting_version, ensure_default_model

    settings = get_settings()
    engine = _engine(settings)
    try:
        ensure_default_model(settings, engine, store_from_settings(settings))
        if ref is None:
            version = emitting_version(engine, settings.model_policy)
            if version is None:
                raise fail("no active model")
        else:
            with db.read_session(engine) as session:
                version = find_version(session, *_split(ref))
        metrics = evaluate_version(settings, store_from_settings(settings), version, data)
        if record:
            with db.write_session(engine) as session:
                row = find_version(session, version.name, version.version)
                row.auroc = metrics.auroc
                session.add(row)
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"model: {version.label}")
    for key, value in metrics.model_dump().items():
        typer.echo(f"{key}: {value}")


@model_app.command("compare")
def compare(
    candidate: Annotated[str, typer.Argument(help="Shadow NAME:VERSION")],
    baseline: Annotated[str | None, typer.Argument(help="NAME:VERSION [default: active]")] = None,
) -> None:
    """Compare a shadow version's stored study results with the active version's."""
    from xraygate.core.config import get_settings
    from xraygate.inference.evaluation import compare_results
    from xraygate.inference.registry import emitting_version

    settings = get_settings()
    engine = _engine(settings)
    if baseline is None:
        active = emitting_version(engine, settings.model_policy)
        if active is None:
            raise fail("no active model")
        baseline = active.label
    report = compare_results(engine, candidate, baseline)
    for key, value in report.items():
        typer.echo(f"{key}: {value}")


@model_app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Argument(help="Folder with NORMAL/ and PNEUMONIA/ images.")],
    name: Annotated[str, typer.Option(help="Model name.")] = "site-cxr",
    version: Annotated[str, typer.Option(help="Version string.")] = "1",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 20,
    size: Annotated[int, typer.Option(help="Input height and width in pixels.")] = 128,
    out: Annotated[Path | None, typer.Option(help="Keep the artifact here.")] = None,
) -> None:
    """Train a model from a site's labelled images and import it as a candidate; its manifest
    carries the training reference (OOD gate, score distribution)."""
    from xraygate.cli.model_loop import actor
    from xraygate.core import db
    from xraygate.core.config import get_settings
    from xraygate.core.models.audit import model_event
    from xraygate.core.storage import store_from_settings
    from xraygate.inference.manifest import InputSpec
    from xraygate.inference.registry import import_model
    from xraygate.inference.training.data import load_directory
    from xraygate.inference.training.train import TrainConfig, save, train

    settings = get_settings()
    try:
        spec = InputSpec(height=size, width=size)
    except ValueError as exc:
        raise fail(f"--size must be between 16 and 1024: {size}") from exc
    try:
        images, labels, skipped = load_directory(data, spec)
        for line in skipped:
            typer.echo(f"skipped {line}", err=True)
        trained = train(images, labels, spec, TrainConfig(epochs=epochs))
        target = out or Path(tempfile.mkdtemp(prefix="xraygate-model-"))
        save(
            trained.model,
            target,
            name=name,
            version=version,
            spec=spec,
            metrics=trained.metrics,
            reference=trained.reference,
            training_data=f"{len(labels)} images from {data.name}",
            intended_use="Site-trained pneumonia triage model; validate before clinical use.",
            demo=False,
        )
        engine = _engine(settings)
        row = import_model(engine, store_from_settings(settings), target, origin=f"trained:{data}")
        with db.write_session(engine) as session:
            detail = f"trained on {len(labels)} images from {data} sha256={row.sha256}"
            session.add(model_event("import", row.label, actor=actor(), detail=detail))
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    metrics = trained.metrics
    typer.echo(
        f"trained and imported {row.label} (candidate), auroc={metrics.auroc}, "
        f"OOD gate flags {metrics.ood_flagged or 0.0:.1%} of the held-out split"
    )


def results(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    limit: Annotated[int, typer.Option(metavar="N", help="Most recent N studies.")] = 50,
) -> None:
    """Study results, newest first: score, category, model, delivery per channel."""
    from xraygate.cli import quick
    from xraygate.core import delivery_state
    from xraygate.core.config import get_settings

    settings = get_settings()
    data = quick.results_data(settings, limit)
    if data is None:
        data = results_data(settings, limit)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    if not data:
        typer.echo("No results yet: send a study (xraygate send FILE_OR_DIR) and check again.")
        return
    _print_results(data, [c.name for c in delivery_state.CHANNELS], delivery_state.label)


def results_data(settings: Settings, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` newest study results with their delivery states, through the ORM
    (migrating first if needed); :func:`xraygate.cli.quick.results_data` is the quick path."""
    from sqlalchemy import select
    from sqlmodel import col

    from xraygate.core import db, delivery_state
    from xraygate.core.models import Study, StudyResult

    engine = _engine(settings)
    with db.read_session(engine) as session:
        rows = session.execute(
            select(StudyResult, col(Study.accession_number))
            .join(Study, col(Study.id) == col(StudyResult.study_pk))
            .order_by(col(StudyResult.updated_at).desc())
            .limit(limit)
        ).all()
        uids = sorted({r.study_instance_uid for r, _ in rows})
        delivery = delivery_state.load(session, settings, uids)
    return [
        {
            "study_instance_uid": r.study_instance_uid,
            "accession_number": acc,
            "score": r.score,
            "category": r.category,
            "model_version": r.model_version,
            "shadow": r.shadow,
            "revision": r.revision,
            "reason": r.reason,
            "demo_model": r.demo_model,
            "updated_at": r.updated_at.isoformat(),
            "delivery": {k: v.value for k, v in delivery[r.study_instance_uid].items()},
        }
        for r, acc in rows
    ]


def _print_results(data: list[dict[str, Any]], channels: list[str], label: Any) -> None:
    from xraygate.cli.tables import print_table

    headers = ["updated (UTC)", "accession", "score", "category", "model", *map(label, channels)]
    table = []
    for item in data:
        score = "-" if item["score"] is None else f"{item['score'] * 100:.1f}%"
        model = item["model_version"] + (" (demo)" if item["demo_model"] else "")
        if item["shadow"]:
            model += " (shadow)"
        table.append(
            [
                item["updated_at"][:19].replace("T", " "),
                item["accession_number"] or "-",
                score,
                item["category"] + (f": {item['reason']}" if item["reason"] else ""),
                model,
                *(item["delivery"].get(c, "-") for c in channels),
            ]
        )
    print_table(headers, table, right={2})
