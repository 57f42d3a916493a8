"""The continual-improvement loop's commands on ``xraygate model``: report (performance from
clinicians' labels), keygen / publish / pull (signed distribution) and promote (the rule)."""

from __future__ import annotations

import getpass
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from xraygate.cli.core import fail
from xraygate.core.errors import XraygateError


def register(model_app: typer.Typer) -> None:
    model_app.command("report")(report)
    model_app.command("keygen")(keygen)
    model_app.command("publish")(publish)
    model_app.command("pull")(pull)
    model_app.command("promote")(promote)


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _engine() -> Any:
    from xraygate.core import db
    from xraygate.core.config import get_settings

    settings = get_settings()
    db.upgrade(settings.resolved_database_url)
    return db.get_engine(settings.resolved_database_url)


def parse_since(value: str | None) -> datetime | None:
    from xraygate.core.quality.report import parse_since as parse

    try:
        return parse(value)
    except ValueError:
        raise fail(f"--since takes a date, an ISO timestamp or Nd / Nh, not {value!r}") from None


def report(
    ref: Annotated[str | None, typer.Argument(help="NAME:VERSION [default: every version]")] = None,
    since: Annotated[str | None, typer.Option(help="From this date, or 30d / 12h ago.")] = None,
    period: Annotated[str, typer.Option(help="day | week | month")] = "week",
    as_json: Annotated[bool, typer.Option("--json", help="The whole report as JSON.")] = False,
    fhir: Annotated[bool, typer.Option("--fhir", help="FHIR R4 MeasureReports (Bundle).")] = False,
) -> None:
    """Performance from clinicians' labels per version and period: sensitivity, specificity,
    PPV of high, NPV of low, agreement, indeterminate / OOD shares, AUROC, calibration, drift,
    with 95 % intervals; other versions paired with the active one on the same studies."""
    from xraygate.core.config import get_settings
    from xraygate.core.quality.measure_report import bundle
    from xraygate.core.quality.report import PERIODS, build_report

    if period not in PERIODS:
        raise fail(f"--period must be one of {', '.join(PERIODS)}")
    try:
        data = build_report(
            _engine(),
            model=ref,
            since=parse_since(since),
            period=period,
            policy=get_settings().model_policy,
        )
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    if fhir:
        typer.echo(json.dumps(bundle(data, get_settings().fhir_system_base), indent=2))
    elif as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(render(data))


def _p(figure: dict[str, Any] | None, ci: bool = True) -> str:
    if not figure or figure.get("value") is None:
        return "-"
    text = f"{figure['value']:.3f}"
    if ci and figure.get("ci95"):
        low, high = figure["ci95"]
        text += f" [{low:.2f},{high:.2f}]"
    return text


def _line(name: str, m: dict[str, Any]) -> str:
    drift = m.get("drift") or {}
    calibration = m.get("calibration") or {}
    return (
        f"  {name:<10} {m['n_results']:>7} {m['n_labelled']:>8}  "
        f"{_p(m['sensitivity']):<19} {_p(m['specificity']):<19} "
        f"{_p(m['ppv_high'], False):>6} {_p(m['npv_low'], False):>6} "
        f"{_p(m['agreement'], False):>6} {_p(m['indeterminate_share'], False):>6} "
        f"{_p(m['ood_share'], False):>6} {_p(m.get('auroc')):<19} "
        f"{calibration.get('ece', '-') if calibration else '-':>6} "
        f"{drift.get('psi', '-') if drift else '-':>6}"
    )


def render(data: dict[str, Any]) -> str:
    lines = [
        f"labels: {data['label_source']}; period: {data['period']}; "
        f"since: {data['since'] or 'the first result'}"
    ]
    header = (
        f"  {'period':<10} {'results':>7} {'labelled':>8}  {'sensitivity':<19} "
        f"{'specificity':<19} {'PPVhi':>6} {'NPVlo':>6} {'agree':>6} {'indet':>6} {'OOD':>6} "
        f"{'AUROC':<19} {'ECE':>6} {'PSI':>6}"
    )
    for version in data["versions"]:
        demo = ", DEMO model: not for clinical use" if version["demo"] else ""
        lines.append("")
        lines.append(
            f"{version['model_version']} ({version['state']}{demo}); "
            f"high threshold {version['high_threshold']}"
        )
        lines.append(header)
        lines.append(_line("all", version["totals"]))
        lines += [_line(p["period"], p) for p in version["periods"]]
    for pair in data["paired"]:
        lines.append("")
        lines.append(
            f"paired: {pair['candidate']} vs {pair['baseline']} on {pair['n_paired']} "
            "labelled studies both read"
        )
        for key in ("agreement", "sensitivity", "specificity"):
            diff = pair["difference"][key]
            value = "-" if diff["value"] is None else f"{diff['value']:+.3f}"
            ci = f" [{diff['ci95'][0]:+.3f},{diff['ci95'][1]:+.3f}]" if diff["ci95"] else ""
            lines.append(
                f"  {key:<12} {_p(pair['baseline_figures'][key], False)} -> "
                f"{_p(pair['candidate_figures'][key], False)}  difference {value}{ci}"
            )
    return "\n".join(lines)


def keygen(
    out: Annotated[Path, typer.Option(help="Folder for model-signing.pem / .pub.")],
) -> None:
    """Create an Ed25519 key pair for signing model releases (keep the .pem secret)."""
    from xraygate.inference.signing import generate

    try:
        pair = generate(out)
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"private key: {pair.private_file} (mode 0600; XRAYGATE_MODEL_SIGNING_KEY_FILE)")
    typer.echo(f"public key id {pair.key_id}; sites trust it with")
    typer.echo(f"XRAYGATE_MODEL_TRUSTED_KEYS={pair.public}")


def publish(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION")],
    to: Annotated[str, typer.Option("--to", help="Directory or s3://bucket/prefix.")],
    key: Annotated[
        Path | None, typer.Option(help="PEM private key [default: XRAYGATE_MODEL_SIGNING_KEY_FILE]")
    ] = None,
) -> None:
    """Publish a registered version as a signed release (artifact, manifest, release.json,
    release.sig) for sites to pull."""
    from xraygate.core.config import get_settings
    from xraygate.core.storage import store_from_settings
    from xraygate.inference import distribution, signing

    settings = get_settings()
    key_file = key or settings.model_signing_key_file
    if key_file is None:
        raise fail("no signing key: give --key or set XRAYGATE_MODEL_SIGNING_KEY_FILE")
    try:
        target = distribution.source_store(settings, to)
        release = distribution.publish(
            _engine(),
            store_from_settings(settings),
            target,
            to,
            ref,
            signing.load_private(key_file),
            actor=actor(),
        )
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(
        f"published {release.label} to {to} (sha256 {release.artifact.sha256[:12]}, "
        f"key {release.key_id})"
    )


def pull(
    source: Annotated[
        str | None, typer.Option("--from", help="[default: XRAYGATE_MODEL_SOURCE_URL]")
    ] = None,
) -> None:
    """Import every new release at the model source whose signature and sha256s verify with a
    trusted key, as a shadow version. Exit code 1 when a release was refused."""
    from xraygate.core.config import get_settings
    from xraygate.core.storage import store_from_settings
    from xraygate.inference.distribution import pull as pull_releases

    settings = get_settings()
    url = source or settings.model_source_url
    if not url:
        raise fail("no model source: give --from or set XRAYGATE_MODEL_SOURCE_URL")
    try:
        outcomes = pull_releases(
            settings, _engine(), store_from_settings(settings), url, actor=actor()
        )
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    for outcome in outcomes:
        typer.echo(f"{outcome.model}: {outcome.status} ({outcome.detail})")
    if not outcomes:
        typer.echo(f"no releases at {url}")
    if any(o.status == "refused" for o in outcomes):
        raise typer.Exit(code=1)


def promote(
    dry_run: Annotated[bool, typer.Option(help="Show the verdicts, change nothing.")] = False,
    min_paired: Annotated[
        int | None, typer.Option(help="[default: XRAYGATE_MODEL_PROMOTE_MIN_PAIRED]")
    ] = None,
) -> None:
    """Apply the promotion rule by hand: a shadow version whose agreement with clinicians is not
    worse and whose sensitivity is higher, on enough paired labelled studies, becomes active."""
    from xraygate.core.config import get_settings
    from xraygate.core.quality.promotion import promote as apply
    from xraygate.core.quality.promotion import verdicts

    settings = get_settings()
    engine = _engine()
    needed = settings.model_promote_min_paired if min_paired is None else min_paired
    results = verdicts(engine, needed, settings.model_policy)
    if not results:
        typer.echo("no shadow version to compare with the active one")
        return
    for v in results:
        verdict = "PROMOTE" if v.promote else "keep"
        typer.echo(f"{v.candidate} vs {v.baseline}: {verdict} ({v.reason})")
    passing = [v for v in results if v.promote]
    if passing and not dry_run:
        best = max(passing, key=lambda v: (v.sensitivity[1] or 0.0, v.agreement[1] or 0.0))
        try:
            apply(engine, best, actor=actor(), via="cli")
        except XraygateError as exc:
            raise fail(str(exc)) from exc
        typer.echo(f"{best.candidate} is now active")
