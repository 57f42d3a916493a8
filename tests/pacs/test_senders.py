"""The two ways to the PACS, each against Orthanc: STOW-RS (its DICOMweb plugin) and C-STORE over
mutual TLS; and a refusal that is dead-lettered while the patient's next SR still goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dicom_scp.test_tls import pki  # noqa: F401 - the fixture
from tests.orthanc import Orthanc
from tests.pacs.conftest import pacs_env
from tests.results_factory import enqueue_emit, make_result, rescore, run_until
from xraygate.core.config import Settings
from xraygate.core.jobs import JobKind
from xraygate.core.models import OutboxState
from xraygate.pacs.senders import classify_status, make_cstore_sender
from xraygate.pacs.worker import make_handlers

pytestmark = pytest.mark.integration


def _deliver_one(env: object, made: object) -> None:
    from tests.pacs.conftest import PacsEnv

    assert isinstance(env, PacsEnv)
    handlers = make_handlers(env.settings, env.store, env.queue)
    enqueue_emit(env.queue.engine, env.queue, JobKind.EMIT_PACS, made)  # type: ignore[arg-type]
    run_until(env.queue, handlers, env.all_final)  # type: ignore[arg-type]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_stow_rs_to_orthanc_dicomweb(settings: Settings, tmp_path: Path) -> None:
    with Orthanc(tmp_path / "o", dicomweb=True) as orthanc:
        env = pacs_env(settings, orthanc, pacs_host=None, pacs_stow_url=f"{orthanc.base}/dicom-web")
        made = make_result(env.queue.engine)
        _deliver_one(env, made)
        (msg,) = env.outbox()
        assert msg.state == OutboxState.DELIVERED, msg.last_error
        assert msg.last_error is None and msg.response  # Orthanc's STOW-RS answer is kept
        (found,) = orthanc.find_instances(SOPInstanceUID=msg.control_id)
        assert found["MainDicomTags"]["SOPInstanceUID"] == msg.control_id
        assert orthanc.get(f"/instances/{found['ID']}/tags?simplify")["Modality"] == "SR"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cstore_over_mutual_tls_to_orthanc(
    settings: Settings,
    tmp_path: Path,
    pki: Path,  # noqa: F811
) -> None:
    tls = {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(pki / "server.crt"),
        "DicomTlsPrivateKey": str(pki / "server.key"),
        "DicomTlsTrustedCertificates": str(pki / "ca.crt"),
        "DicomTlsRemoteCertificateRequired": True,
    }
    with Orthanc(tmp_path / "o", extra=tls) as orthanc:
        plain = pacs_env(settings, orthanc)
        env = pacs_env(
            settings,
            orthanc,
            pacs_tls=True,
            pacs_tls_ca_file=pki / "ca.crt",
            pacs_tls_cert_file=pki / "client.crt",
            pacs_tls_key_file=pki / "client.key",
        )
        assert plain.settings.pacs_tls is False
        made = make_result(env.queue.engine)
        _deliver_one(env, made)
        (msg,) = env.outbox()
        assert msg.state == OutboxState.DELIVERED, msg.last_error
        assert msg.response == "C-STORE status 0x0000"
        assert orthanc.find_instances(SOPInstanceUID=msg.control_id)
        # the same object without TLS is not accepted by the TLS-only PACS (retried later)
        assert make_cstore_sender(plain.settings)(msg).result == "retry"
        untrusted = env.settings.model_copy(update={"pacs_tls_cert_file": None})
        assert make_cstore_sender(untrusted)(msg).result == "retry"  # no client certificate


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_refused_object_is_dead_lettered_and_the_next_one_still_goes(
    settings: Settings, tmp_path: Path
) -> None:
    with Orthanc(tmp_path / "o", dicomweb=True) as orthanc:
        wrong = pacs_env(
            settings, orthanc, pacs_host=None, pacs_stow_url=f"{orthanc.base}/no-such-root"
        )
        made = make_result(wrong.queue.engine)
        _deliver_one(wrong, made)
        (dead,) = wrong.outbox()
        assert dead.state == OutboxState.DEAD and (dead.last_error or "").startswith("HTTP 404")
        assert dead.attempts == 1  # refused for good: not retried
        rescore(wrong.queue.engine, made.result_id, score=0.95, category="high")
        right = pacs_env(
            settings, orthanc, pacs_host=None, pacs_stow_url=f"{orthanc.base}/dicom-web"
        )
        _deliver_one(right, made)
        first, second = right.outbox()
        assert (first.state, second.state) == (OutboxState.DEAD, OutboxState.DELIVERED)
        assert orthanc.find_instances(SOPInstanceUID=second.control_id)


def test_cstore_statuses_are_classified() -> None:
    assert classify_status(0x0000).result == "delivered"
    assert classify_status(0xB000).result == "delivered"  # coercion warning: stored
    assert classify_status(0xA700).result == "retry"  # out of resources
    assert classify_status(0xA900).result == "reject"  # data set does not match SOP class
    assert classify_status(0xC000, "cannot understand").result == "reject"
    assert classify_status(0x0122).result == "reject"  # SOP class not supported
