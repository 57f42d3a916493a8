"""De-identification commands: ``deid``, ``feedback`` and ``export-pull``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from xraygate.cli.core import fail
from xraygate.core.errors import (
    BurnedInText,
    DeidentificationError,
    UnparseableInput,
    XraygateError,
)


def register(app: typer.Typer) -> None:
    app.command("deid")(deid)
    app.command("feedback")(feedback)
    app.command("export-pull")(export_pull)


def _files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path
        else:
            raise fail(f"no such file or directory: {path}")


def deid(
    paths: Annotated[list[Path], typer.Argument(help="DICOM files or directories.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    profile: Annotated[str, typer.Option(help="Confidentiality profile.")] = "basic",
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="Annex E option, repeatable (e.g. retain-uids)."),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(help="Secret for UIDs/IDs/date shifts [default: the site secret]."),
    ] = None,
    rules: Annotated[
        Path | None, typer.Option(help="JSON rules: pixel rectangles, safe private elements.")
    ] = None,
    pixel_phi: Annotated[
        str | None,
        typer.Option(help="Burned-in text OCR finds: blank | hold [default: the setting]."),
    ] = None,
) -> None:
    """De-identify files (PS3.15 Annex E) into OUT/<study>/<series>/<sop>.dcm.

    Unreadable files are quarantined (listed in OUT/quarantine.jsonl, never written out) and make
    the exit code 1; images with possible burned-in text and no cleaning rule are skipped. Every
    image is read with OCR: burned-in text is blanked, or with --pixel-phi hold the image is held
    (not written; listed in OUT/held.jsonl with a blurred thumbnail in OUT/held/).
    """
    from xraygate.anonymizer.pixel_phi import TextHeld
    from xraygate.anonymizer.site import deid_config, outbound_deidentifier
    from xraygate.core.config import get_settings

    if profile.lower() != "basic":
        raise fail(f"unknown profile {profile!r}: only 'basic' (plus --option) exists")
    try:
        if pixel_phi is not None and pixel_phi not in ("blank", "hold"):
            raise fail("--pixel-phi must be blank or hold")
        settings = get_settings()
        config = deid_config(
            settings,
            options=list(option) if option is not None else None,
            secret=secret.encode() if secret else None,
            rules_file=rules,
        )
        engine = outbound_deidentifier(settings, config, mode=pixel_phi)
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    out.mkdir(parents=True, exist_ok=True)
    done = skipped = blanked = 0
    quarantined: list[dict[str, str]] = []
    held: list[dict[str, object]] = []
    for path in _files(paths):
        try:
            res = engine.deidentify_file(path)
        except UnparseableInput as exc:
            quarantined.append({"file": str(path), "reason": str(exc)})
            continue
        except TextHeld as exc:
            (out / "held").mkdir(exist_ok=True)
            thumb = out / "held" / f"{len(held):05d}.png"
            thumb.write_bytes(exc.thumbnail)
            held.append(
                {
                    "file": str(path),
                    "reason": str(exc),
                    "thumbnail": thumb.name,
                    **exc.report.manifest(),
                }
            )
            typer.echo(f"held {path}: {exc}", err=True)
            continue
        except (BurnedInText, DeidentificationError) as exc:  # incl. OCR that failed
            skipped += 1
            typer.echo(f"skipped {path}: {exc}", err=True)
            continue
        target = out / res.study_uid / res.series_uid / f"{res.sop_uid}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        res.write(target)
        done += 1
        blanked += res.pixel.action == "blanked"
    for entry in quarantined:
        typer.echo(f"quarantined {entry['file']}: {entry['reason']}", err=True)
    if quarantined:
        lines = "".join(json.dumps(e) + "\n" for e in quarantined)
        (out / "quarantine.jsonl").write_text(lines)
    if held:
        (out / "held.jsonl").write_text("".join(json.dumps(e) + "\n" for e in held))
    typer.echo(
        f"de-identified: {done}  text blanked: {blanked}  skipped: {skipped}  held: {len(held)}  "
        f"quarantined: {len(quarantined)}"
    )
    if quarantined:
        raise typer.Exit(code=1)


def feedback(
    study_uid: Annotated[str, typer.Argument(help="Study Instance UID.")],
    finding: Annotated[str, typer.Option(help="confirm | reject (pneumonia).")],
    by: Annotated[str, typer.Option("--by", help="Who gives the finding.")] = "",
    comment: Annotated[str, typer.Option(help="Free-text comment.")] = "",
) -> None:
    """Record a clinician's finding for a study; the export manifest follows it."""
    from xraygate.core import db
    from xraygate.core.config import get_settings
    from xraygate.core.models.deid import Finding, record_feedback
    from xraygate.core.queue import JobQueue

    try:
        parsed = Finding(finding.lower())
    except ValueError:
        raise fail("--finding must be confirm or reject") from None
    settings = get_settings()
    try:
        queue = JobQueue.from_settings(settings, migrate=True)
        with db.write_session(queue.engine) as session:
            row = record_feedback(session, queue, study_uid, parsed, author=by, comment=comment)
            if row is None:
                raise fail("unknown study")
            agreement = row.agreement
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"recorded {parsed.value} ({agreement} with the model)")


def export_pull(
    dest: Annotated[Path, typer.Argument(help="Local folder for `xraygate model train`.")],
) -> None:
    """Copy the labelled images of the export store into DEST/NORMAL and DEST/PNEUMONIA."""
    from xraygate.anonymizer.site import export_store
    from xraygate.core.config import get_settings

    try:
        store = export_store(get_settings())
        count = 0
        for label in ("NORMAL", "PNEUMONIA"):
            (dest / label).mkdir(parents=True, exist_ok=True)
            for key in store.list(f"images/{label}/"):
                store.download(key, dest / label / key.rsplit("/", 1)[-1])
                count += 1
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"pulled {count} labelled images into {dest}; next: xraygate model train {dest}")
