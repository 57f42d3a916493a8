"""The viewer's routes: the rendered image with a window (explicit or preset) and a size bounded
by XRAYGATE_IMAGE_FULL_MAX_PIXELS, and the saliency map (404 in the error model when none);
both clinician-only and audited."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image
from pydicom import Dataset
from pydicom.data import get_testdata_file
from sqlalchemy import select
from sqlmodel import col

from tests.gateway.conftest import (
    Gateway,
    add_saliency,
    gateway_settings,
    heat_map_png,
    seed,
    token,
)
from xraygate.core.db import get_engine, read_session
from xraygate.core.models import AuditRecord
from xraygate.gateway.app import create_app
from xraygate.gateway.views.imaging import Window, preset_window, render


def _url(gw: Gateway, what: str = "rendered") -> str:
    return f"/api/studies/{gw.high.study_uid}/instances/{gw.high.instance_uids[0]}/{what}"


def _pixels(content: bytes) -> np.ndarray:  # type: ignore[type-arg]
    with Image.open(io.BytesIO(content)) as image:
        return np.asarray(image)


def test_window_presets_and_explicit_windows_change_the_pixels(gw: Gateway) -> None:
    clinician = gw.headers("clinician")
    default = gw.client.get(_url(gw), headers=clinician)
    assert default.status_code == 200 and default.headers["content-type"] == "image/png"
    assert default.headers["x-image-size"] == "1841 1955"  # RG1_UNCR: columns, rows
    low, high = (float(v) for v in default.headers["x-value-range"].split())
    assert low < high
    center, width = (float(v) for v in default.headers["x-window"].split())
    assert width > 0
    base = _pixels(default.content)
    assert max(base.shape) == 1024  # XRAYGATE_IMAGE_MAX_PIXELS
    seen = [base]
    for preset in ("lung", "soft-tissue", "bone"):
        answer = gw.client.get(_url(gw), params={"preset": preset}, headers=clinician)
        assert answer.status_code == 200, preset
        pixels = _pixels(answer.content)
        assert pixels.shape == base.shape
        assert all(np.abs(pixels.astype(int) - s).mean() > 2 for s in seen), preset
        seen.append(pixels)
    narrow = gw.client.get(_url(gw), params={"wc": center, "ww": width / 4}, headers=clinician)
    assert narrow.headers["x-window"] == f"{center:g} {width / 4:g}"
    # a narrower window around the same centre: more contrast (pixels pushed to the ends)
    assert _pixels(narrow.content).std() > base.std()


def test_full_resolution_is_bounded_by_the_setting(gw: Gateway, tmp_path: Path) -> None:
    full = gw.client.get(_url(gw), params={"size": 4096}, headers=gw.headers("clinician"))
    assert full.status_code == 200 and _pixels(full.content).shape == (1955, 1841)
    settings = gateway_settings(tmp_path / "capped", image_full_max_pixels=600)
    made = seed(settings)
    url = f"/api/studies/{made.study_uid}/instances/{made.instance_uids[0]}/rendered"
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": f"Bearer {token(settings, 'clinician')}"}
        small = client.get(url, params={"size": 4096}, headers=auth)
        assert small.status_code == 200 and max(_pixels(small.content).shape) == 600
        default = client.get(url, headers=auth)
        assert max(_pixels(default.content).shape) == 600  # the default never exceeds it either


def test_bad_window_or_size_is_refused_in_the_error_model(gw: Gateway) -> None:
    clinician = gw.headers("clinician")
    one = gw.client.get(_url(gw), params={"wc": 100}, headers=clinician)
    assert one.status_code == 400 and one.json() == {"detail": "give both wc and ww, or neither"}
    for params in (
        {"wc": 1, "ww": 0},
        {"wc": "nan", "ww": 5},
        {"wc": 1, "ww": "inf"},
        {"size": 8},
        {"size": 100000},
        {"preset": "brain"},
    ):
        answer = gw.client.get(_url(gw), params=params, headers=clinician)
        assert answer.status_code == 422, params
        assert "detail" in answer.json()


def test_saliency_map_is_served_when_stored(gw: Gateway) -> None:
    clinician = gw.headers("clinician")
    missing = gw.client.get(_url(gw, "saliency"), headers=clinician)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no saliency map for this image"}
    study = gw.client.get(f"/api/studies/{gw.high.study_uid}", headers=clinician).json()
    assert [i["saliency"] for i in study["instances"]] == [False]

    add_saliency(gw.settings, gw.high)
    found = gw.client.get(_url(gw, "saliency"), headers=clinician)
    assert found.status_code == 200 and found.headers["content-type"] == "image/png"
    assert found.content == heat_map_png()
    study = gw.client.get(f"/api/studies/{gw.high.study_uid}", headers=clinician).json()
    assert [i["saliency"] for i in study["instances"]] == [True]
    assert gw.client.get(_url(gw, "saliency")).status_code == 401
    assert gw.client.get(_url(gw, "saliency"), headers=gw.headers("ehr")).status_code == 403
    other = f"/api/studies/{gw.low.study_uid}/instances/{gw.high.instance_uids[0]}/saliency"
    assert gw.client.get(other, headers=clinician).status_code == 404  # not this study's image

    with read_session(get_engine(gw.settings.resolved_database_url)) as s:
        routes = [
            (r.actor, r.status)
            for r in s.scalars(select(AuditRecord).order_by(col(AuditRecord.id)))
            if r.route.endswith("/saliency")
        ]
    assert routes == [
        ("dr.house", 404),
        ("dr.house", 200),
        ("anonymous", 401),
        ("ehr-system", 403),
        ("dr.house", 404),
    ]


def test_presets_are_hounsfield_windows_on_ct_and_parts_of_the_range_elsewhere() -> None:
    ct = Path(str(get_testdata_file("CT_small.dcm"))).read_bytes()
    lung = render(ct, 512, preset="lung")
    assert lung.window == Window(-600.0, 1500.0)
    assert render(ct, 512, preset="bone").window == Window(400.0, 1800.0)
    explicit = render(ct, 512, Window(40.0, 400.0), preset="lung")  # a window beats a preset
    assert explicit.window == Window(40.0, 400.0)
    assert (
        _pixels(explicit.png).tolist()
        == _pixels(render(ct, 512, preset="soft-tissue").png).tolist()
    )
    # a radiograph: lung is the darker part of the displayed range, whichever way values run
    cr = Dataset()
    cr.Modality = "CR"
    assert preset_window("lung", cr, (0.0, 1000.0), "MONOCHROME2") == Window(300.0, 600.0)
    assert preset_window("lung", cr, (0.0, 1000.0), "MONOCHROME1") == Window(700.0, 600.0)
    assert preset_window("bone", cr, (0.0, 1000.0), "MONOCHROME2") == Window(800.0, 400.0)
    assert preset_window("default", cr, (0.0, 1000.0), "MONOCHROME2") is None
