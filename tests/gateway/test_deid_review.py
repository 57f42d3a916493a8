"""The admin page lists images the pixel PHI step held, with thumbnails OCR cannot read."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.anonymizer.conftest import drain, enqueue_deidentify, make_study
from tests.anonymizer.corpus import to_bytes
from tests.anonymizer.pixel_corpus import burn_in, chest_cr, fuzzy_in
from tests.gateway.conftest import gateway_settings, token
from xraygate.anonymizer.ocr import read_words
from xraygate.anonymizer.worker import make_handlers
from xraygate.core import db
from xraygate.core.queue import JobQueue
from xraygate.core.storage import store_from_settings
from xraygate.gateway.app import create_app

pytestmark = pytest.mark.integration


def test_admin_page_lists_held_images_with_unreadable_thumbnails(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, deid_pixel_phi="hold", deid_secret="review-secret")
    ds = chest_cr()
    burn_in(ds, "LINDQVIST, BEATRIX", ("LINDQVIST", "BEATRIX"), corner="tl", size=80)
    engine = db.get_engine(settings.resolved_database_url)
    store = store_from_settings(settings)
    queue = JobQueue.from_settings(settings)
    made = make_study(engine, store, [to_bytes(ds)])
    enqueue_deidentify(engine, queue, made)
    assert drain(queue, make_handlers(settings, store, queue)) == 1

    admin = {"Authorization": f"Bearer {token(settings, 'admin')}"}
    clinician = {"Authorization": f"Bearer {token(settings, 'clinician')}"}
    with TestClient(create_app(settings), follow_redirects=False) as client:
        listed = client.get("/api/admin/deid/held", headers=admin)
        assert listed.status_code == 200
        (item,) = listed.json()
        assert item["study_instance_uid"] == made.study_uid and "burned-in" in item["reason"]
        assert client.get("/api/admin/deid/held", headers=clinician).status_code == 403
        assert client.get(item["thumbnail"], headers=clinician).status_code == 403

        page = client.get("/admin", headers=admin)
        assert page.status_code == 200
        assert 'id="deid-held"' in page.text and item["thumbnail"] in page.text

        thumb = client.get(item["thumbnail"], headers=admin)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
        img = Image.open(io.BytesIO(thumb.content)).convert("L")
        seen = ""
        for factor in (1, 4, 8):
            big = img.resize((img.width * factor, img.height * factor), Image.Resampling.BICUBIC)
            seen += "".join(w.text.upper() for w in read_words(big, psm=11))
        assert not fuzzy_in("LINDQVIST", seen, 2) and not fuzzy_in("BEATRIX", seen, 2), seen

        missing = client.get("/api/admin/deid/held/999999/thumbnail.png", headers=admin)
        assert missing.status_code == 404
    db.get_engine.cache_clear()
