"""Settings, read from ``XRAYGATE_*`` environment variables (and an optional ``.env`` file).

One cached :func:`get_settings` serves the whole process; tests call ``get_settings.cache_clear()``
after changing the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from xraygate.core.config_oidc import OidcSettings

#: Environment variable naming a directory of secret files, one per setting, named like the
#: variable (``xraygate_auth_shared_secret``): Docker/Compose secrets (``/run/secrets``) or a
#: Kubernetes Secret mounted as a volume. Environment variables win over files.
SECRETS_DIR_ENV = "XRAYGATE_SECRETS_DIR"

#: Which model version emits results (see :func:`xraygate.core.models.results.emitting_version`).
ModelPolicy = Literal["active", "best-auroc"]
Hl7Charset = Literal[
    "UNICODE UTF-8", "8859/1", "8859/2", "8859/5", "8859/7", "8859/9", "8859/15", "ASCII"
]


def secret_value(secret: SecretStr | str | None) -> str | None:
    """The plain value of a secret setting, for the one call that hands it to a library (a plain
    string too: ``Settings.model_copy(update=...)`` does not validate)."""
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(OidcSettings):
    """Every setting of the service. Each field is ``XRAYGATE_<FIELD NAME>`` in the environment
    (the single sign-on ones are in :class:`OidcSettings`)."""

    model_config = SettingsConfigDict(env_prefix="XRAYGATE_", env_file=".env", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings, dotenv_settings]
        if secrets_dir := os.environ.get(SECRETS_DIR_ENV):
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        return tuple(sources)

    # --- storage and database -------------------------------------------------------------
    data_dir: Path = Field(Path("./var"), description="Directory for embedded database and files.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite at <data_dir>/xraygate.db."
    )
    storage_url: str | None = Field(
        None, description="Object store: a path, or s3://bucket/prefix; default <data_dir>/objects."
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint URL (MinIO, Ceph, AWS).")
    s3_region: str = Field("us-east-1", description="S3 region name.")
    s3_access_key_id: str | None = Field(None, description="S3 access key (else boto3 chain).")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")
    min_free_bytes: int = Field(
        256 * 1024 * 1024,
        description="Refuse C-STORE (0xA700) when the local store has less free space.",
    )

    # --- DICOM SCP ---------------------------------------------------------------------
    ae_title: str = Field("XRAYGATE", description="Our DICOM application entity title.")
    dicom_host: str = Field("0.0.0.0", description="Address the DICOM SCP listens on.")
    dicom_port: int = Field(11112, description="DICOM SCP port.")
    allowed_calling_aets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated calling AE titles allowed to associate; empty = any.",
    )
    require_called_aet: bool = Field(
        True,
        description="Reject associations whose called AE title is not ours (XRAYGATE_AE_TITLE).",
    )
    max_associations: int = Field(
        16,
        description="Maximum concurrent inbound associations (connections that have not sent "
        "an A-ASSOCIATE-RQ yet do not count; XRAYGATE_DICOM_ARTIM_SECONDS closes those).",
    )
    max_associations_per_aet: int = Field(
        8, description="Maximum concurrent inbound associations from one calling AE title."
    )
    max_associations_per_address: int = Field(
        12, description="Maximum concurrent inbound associations from one source IP address."
    )
    dicom_max_pending_connections: int = Field(
        64,
        description="Close new TCP connections at once while this many others have not sent "
        "their A-ASSOCIATE-RQ yet.",
    )
    dicom_artim_seconds: float = Field(
        5.0,
        description="ARTIM: close a TCP connection that sends no A-ASSOCIATE-RQ within seconds.",
    )
    max_image_pixels: int = Field(
        50_000_000,
        description="Refuse (C-STORE 0xA900) and never decode an image declaring more samples "
        "(Rows x Columns x Frames x Samples per Pixel). The largest CR/DX detectors are about "
        "4300 x 5300 (23 M); the default leaves twice that.",
    )
    max_pdu_size: int = Field(
        131072,
        description="Maximum PDU size we receive (bytes); 128 KiB is pynetdicom's fastest here. "
        "A peer sending a longer PDU is aborted before the PDU is read.",
    )
    network_timeout: float = Field(60.0, description="Drop idle DICOM peers after seconds.")
    startup_wait_seconds: float = Field(
        60.0,
        description="At start-up, keep trying an unreachable database or object store this long "
        "(a pod that starts before PostgreSQL or S3, or during an outage) before exiting with an "
        "error.",
    )
    shutdown_grace_seconds: float = Field(
        30.0,
        description="On SIGTERM: seconds open associations and running jobs get to finish; then "
        "further C-STOREs are refused with 0xA700 (send again) and unfinished jobs' leases are "
        "released. Keep it below the orchestrator's termination grace period.",
    )
    scp_processes: int = Field(
        1,
        description="Receiving processes of `xraygate serve`/`scp`, sharing the DICOM port "
        "(SO_REUSEPORT), the database and the store; 0 = one per CPU core. Only the first "
        "process's metrics are on /metrics.",
    )
    scp_fast_path: bool = Field(
        True,
        description="Serve C-STORE requests in the association's receiving thread with the "
        "SCP's own DIMSE code (dicom_scp/fastpath.py); false: every message through pynetdicom.",
    )
    scp_spool_memory_bytes: int = Field(
        2**20,
        ge=0,
        description="Fast path: a data set up to this size (bytes, File Meta included) is "
        "received in memory and written once, into the object store; a larger one is spooled "
        "to a file under the data dir as it arrives. Per association; 0 = always a file.",
    )
    ingest_journal: bool = Field(
        True,
        description="Acknowledge a C-STORE once the object and a journal record are fsynced; "
        "an indexer commits index rows and jobs in batches (false: commit before answering).",
    )
    ingest_journal_dir: Path | None = Field(
        None,
        description="Ingest journal directory (default <data_dir>/journal); it must survive "
        "the process (a persistent volume), as the object store does.",
    )
    ingest_sync: Literal["syncfs", "fsync"] = Field(
        "syncfs",
        description="How an acknowledged object is made durable with the journal: syncfs (one "
        "syncfs of each filesystem per group commit covers the objects, their directories and "
        "the journal; Linux) or fsync (each object file, each directory and the journal).",
    )
    ingest_batch_size: int = Field(
        256, description="Most journaled objects the indexer commits in one transaction."
    )
    ingest_batch_linger_seconds: float = Field(
        0.05,
        ge=0,
        description="The indexer waits up to this long for a batch to fill before it commits "
        "(fewer flushes beside the receivers' own; indexing, not the C-STORE answer, waits).",
    )
    ingest_backlog_limit: int = Field(
        10000,
        description="Refuse C-STOREs (0xA702) while more journaled objects than this wait for "
        "the index.",
    )
    tls_cert_file: Path | None = Field(None, description="PEM certificate: enables DICOM TLS.")
    tls_key_file: Path | None = Field(None, description="PEM private key for DICOM TLS.")
    tls_ca_file: Path | None = Field(
        None, description="PEM CA bundle: require client certificates signed by it."
    )

    # --- HTTP gateway --------------------------------------------------------------------
    http_host: str = Field("0.0.0.0", description="Address the HTTP gateway listens on.")
    http_port: int = Field(8080, description="HTTP gateway port (FHIR API, admin, pages).")
    http_max_body_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted (413 otherwise), checked before "
        "authentication and before the body is read (Content-Length or counted chunks).",
    )
    http_header_timeout_seconds: float = Field(
        10.0, gt=0, description="Close a connection whose request headers take longer."
    )
    http_keep_alive_seconds: int = Field(
        5, ge=1, description="Close an idle keep-alive HTTP connection after seconds."
    )
    http_trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses of reverse proxies whose X-Forwarded-For / "
        "-Proto headers are believed; none = the peer is the client. Behind a proxy, "
        "XRAYGATE_FHIR_BASE_URL is required.",
    )
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Host header values accepted (e.g. `xraygate.hospital.org`, "
        "`*.hospital.org`); others get 400. Empty = any.",
    )

    # --- gateway: authentication, sessions, operations (gateway/) -----------------------
    auth_issuer: str = Field("xraygate", description="Required `iss` claim of bearer JWTs.")
    auth_audience: str = Field("xraygate", description="Required `aud` claim of bearer JWTs.")
    auth_jwks_url: str | None = Field(
        None, description="JWKS URL of the identity provider (RS*/ES*/PS* tokens)."
    )
    auth_jwks_file: Path | None = Field(
        None, description="JWKS file, instead of a URL (offline or pinned keys)."
    )
    auth_shared_secret: SecretStr | None = Field(
        None,
        description="HS256 shared key for bearer JWTs (and `xraygate token create`); default: "
        "generated once into <data_dir>/auth-secret unless a JWKS is configured.",
    )
    auth_leeway_seconds: float = Field(30.0, description="Clock skew allowed on exp/nbf/iat.")
    auth_max_token_seconds: float = Field(
        86400.0,
        gt=0,
        description="Longest bearer token lifetime accepted (exp - iat, and exp - now): a "
        "stolen long-lived token is refused; `xraygate token create` keeps within it.",
    )
    auth_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated static API keys of system clients, each "
        "`name:role[+role]:sha256-of-key` (see `xraygate token api-key`).",
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Key signing browser session cookies; default: generated once into "
        "<data_dir>/session-secret (set it when several gateways share sessions).",
    )
    session_hours: float = Field(8.0, description="Longest browser session, in hours.")
    session_cookie_secure: bool = Field(
        False, description="Mark the session cookie Secure (set it behind HTTPS)."
    )
    metrics_auth: bool = Field(
        False, description="Require the admin role (or an admin API key) for /metrics."
    )
    ops_port: int | None = Field(
        None,
        description="Port of a /healthz, /readyz, /metrics listener in `xraygate scp` and "
        "`xraygate worker` (split deployments); off when unset.",
    )
    image_max_pixels: int = Field(
        1024, description="Longest side of study images rendered by the gateway."
    )
    image_full_max_pixels: int = Field(
        4096,
        description="Longest side of the viewer's full-resolution rendering; larger images are "
        "downscaled to it.",
    )

    # --- work queue ----------------------------------------------------------------------
    workers: int = Field(1, description="Worker threads started by `xraygate serve`/`worker`.")
    queue_lease_seconds: float = Field(
        300.0, description="A claimed job not finished in this time is reclaimed."
    )
    queue_max_attempts: int = Field(5, description="Attempts before a job is dead-lettered.")
    queue_backoff_seconds: float = Field(2.0, description="First retry delay; doubles each try.")
    queue_backoff_max_seconds: float = Field(600.0, description="Upper bound of the retry delay.")
    queue_poll_seconds: float = Field(0.2, description="Idle worker poll interval.")

    # --- inference ---------------------------------------------------------------------
    infer_modalities: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CR", "DX", "DR"],
        description="Comma-separated modalities the model may read.",
    )
    infer_chest_terms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CHEST", "THORAX", "LUNG", "CXR", "TORAX"],
        description="Body part / description terms that mean chest.",
    )
    infer_accept_missing_view: bool = Field(
        False,
        description=(
            "Score images with neither ViewPosition nor ViewCodeSequence (a lateral may be"
            " among them); lateral and other non-frontal views are always refused."
        ),
    )
    model_policy: ModelPolicy = Field(
        "active",
        description="Which model emits results: 'active' (the one activated) or 'best-auroc' "
        "(the validated version with the highest AUROC).",
    )
    infer_batch_size: int = Field(16, description="Images predicted together by one worker.")
    saliency: bool = Field(
        True,
        description="Store a saliency map (Grad-CAM) with each image the active model scores; "
        "the study page overlays it. Costs one extra forward and backward pass per batch.",
    )
    bundled_demo_model: bool = Field(
        True, description="Register and activate the bundled demo model when none is registered."
    )

    # --- model distribution, promotion and quality (inference/distribution, core/quality) ---
    model_source_url: str | None = Field(
        None,
        description="Where signed model releases are published (a path or s3://bucket/prefix): "
        "workers pull new ones periodically, verify them and import them as shadow; off when "
        "unset.",
    )
    model_source_s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint of the model source (default: the main S3 endpoint)."
    )
    model_source_s3_region: str = Field("us-east-1", description="Model source S3 region.")
    model_source_s3_access_key_id: str | None = Field(
        None, description="Model source access key (default: the main S3 key, else boto3 chain)."
    )
    model_source_s3_secret_access_key: SecretStr | None = Field(
        None, description="Model source secret key."
    )
    model_pull_interval_seconds: float = Field(
        3600.0, description="How often workers look for new releases at the model source."
    )
    model_trusted_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Ed25519 public keys (base64, from `xraygate model keygen`) "
        "whose signatures this site accepts on pulled models; none = nothing is pulled.",
    )
    model_signing_key_file: Path | None = Field(
        None, description="PEM Ed25519 private key `xraygate model publish` signs with."
    )
    model_auto_promote: bool = Field(
        False,
        description="Activate a shadow version when, on enough paired labelled studies, its "
        "agreement with clinicians is not worse and its sensitivity is higher.",
    )
    model_promote_min_paired: int = Field(
        200, description="Paired labelled studies the promotion rule needs."
    )
    quality_window_days: float = Field(
        30.0, description="Window of the per-version quality and drift gauges on /metrics."
    )

    # --- results out: FHIR, HL7 v2, escalation (fhir/, hl7/, gateway/fhir_api.py) ------------
    fhir_system_base: str = Field(
        "https://xraygate.example.org/fhir",
        description="Base URL of our FHIR code system and identifier systems (set it to a URL "
        "your organisation controls); the pneumonia risk code is <base>/CodeSystem/ai-findings.",
    )
    fhir_base_url: str | None = Field(
        None,
        description="Public base URL of the FHIR API for Bundle links; default from the request.",
    )
    local_timezone: str = Field(
        "UTC", description="IANA time zone of DICOM StudyDate/StudyTime (they carry none)."
    )
    fhir_push_url: str | None = Field(
        None, description="EHR FHIR base URL to POST transaction Bundles to; push off when unset."
    )
    fhir_push_auth_header: str = Field(
        "Authorization", description="Header carrying the FHIR push credential."
    )
    fhir_push_auth_token: SecretStr | None = Field(
        None, description="Value of that header, e.g. 'Bearer <token>'; none when unset."
    )
    fhir_push_timeout: float = Field(10.0, description="FHIR push timeout in seconds.")
    fhir_push_patient_mode: Literal["reference", "create-if-missing"] = Field(
        "reference",
        description="How a push names the patient: `reference` = a conditional reference "
        "`Patient?identifier=system|value` to the EHR's patient (never writes Patient); "
        "`create-if-missing` = also a conditional create (`ifNoneExist`) of a minimal Patient.",
    )
    fhir_patient_id_systems: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object: IssuerOfPatientID (or the UniversalEntityID of "
        "IssuerOfPatientIDQualifiersSequence) -> identifier system URI of the patient's MRN.",
    )
    fhir_patient_id_default_system: str | None = Field(
        None,
        description="Identifier system of a PatientID without issuer; default "
        "<fhir_system_base>/patient-id.",
    )
    fhir_accession_system: str | None = Field(
        None,
        description="Identifier system of accession numbers (the RIS's); default "
        "<fhir_system_base>/accession.",
    )
    study_stable_seconds: float = Field(
        10.0,
        description="A study is reported (FHIR, HL7) once no image arrived for this long; "
        "0 reports at once after each image. Later images make a new version.",
    )
    feedback_finalises: bool = Field(
        True,
        description="A clinician's finding (feedback confirm/reject) makes the study's AI "
        "result final (FHIR `final`, HL7 `F`); later changes are amended/corrected (`C`).",
    )
    hl7_host: str | None = Field(None, description="MLLP host for ORU^R01; HL7 off when unset.")
    hl7_port: int | None = Field(None, description="MLLP port; HL7 off when unset.")
    hl7_timeout: float = Field(30.0, description="Seconds to wait to connect and for the ACK.")
    hl7_sending_application: str = Field("XRAYGATE", description="MSH-3 sending application.")
    hl7_sending_facility: str = Field("RADIOLOGY", description="MSH-4 sending facility.")
    hl7_receiving_application: str = Field("EHR", description="MSH-5 receiving application.")
    hl7_receiving_facility: str = Field("HOSPITAL", description="MSH-6 receiving facility.")
    hl7_processing_id: Literal["P", "T", "D"] = Field(
        "P", description="MSH-11: P production, T training, D debug."
    )
    hl7_charset: Hl7Charset = Field(
        "UNICODE UTF-8",
        description=(
            "MSH-18 character set (HL7 table 0211); the ORU bytes are encoded in it and a"
            " character it cannot represent is sent as '?'."
        ),
    )
    hl7_patient_class: str = Field(
        "U",
        description="PV1-2 patient class (HL7 table 0004: E, I, O, P, R, B, C, N, U unknown).",
    )
    hl7_default_assigning_authority: str = Field(
        "",
        description=(
            "PID-3 assigning authority when the DICOM has no IssuerOfPatientID: a namespace, an"
            " OID (sent as &OID&ISO) or NAMESPACE&OID&ISO; empty: MSH-4 sending facility."
        ),
    )
    escalation_hl7_host: str | None = Field(
        None, description="Extra MLLP host that also receives high-risk ORUs (escalation)."
    )
    escalation_hl7_port: int | None = Field(None, description="Port of the escalation host.")
    escalation_webhook_url: str | None = Field(
        None, description="URL that receives a JSON POST for each high-risk result."
    )
    delivery_max_attempts: int = Field(
        20, description="Delivery attempts (HL7, FHIR push, webhook) before dead-lettering."
    )
    delivery_stream_lease_seconds: float = Field(
        120.0, description="Lease on a patient's ordered delivery stream while sending."
    )

    # --- the PACS channel (pacs/): DICOM SR and key image back to the archive -------------
    pacs_host: str | None = Field(
        None, description="PACS C-STORE SCP host for AI result SRs; with the port, PACS on."
    )
    pacs_port: int | None = Field(None, description="PACS C-STORE SCP port.")
    pacs_ae: str = Field("PACS", description="Called AE title of the PACS.")
    pacs_tls: bool = Field(False, description="Store to the PACS over DICOM TLS.")
    pacs_tls_ca_file: Path | None = Field(
        None, description="PEM CA bundle verifying the PACS's certificate (default: system)."
    )
    pacs_tls_cert_file: Path | None = Field(
        None, description="PEM client certificate for the PACS (mutual TLS)."
    )
    pacs_tls_key_file: Path | None = Field(None, description="PEM key of that certificate.")
    pacs_stow_url: str | None = Field(
        None,
        description="DICOMweb base URL for STOW-RS (POST <url>/studies) instead of C-STORE.",
    )
    pacs_stow_auth_token: SecretStr | None = Field(
        None, description="Authorization header value for STOW-RS, e.g. 'Bearer <token>'."
    )
    pacs_timeout: float = Field(30.0, description="Seconds to connect and for each PACS answer.")
    pacs_key_image: bool = Field(
        False,
        description="Also store a Secondary Capture 'AI key image' (risk banner burned into a "
        "copy of the image read) with each SR.",
    )
    pacs_institution: str | None = Field(None, description="Institution Name put in the SR.")
    dicomweb_max_request_bytes: int = Field(
        512 * 1024 * 1024, description="Largest STOW-RS request body accepted (413 above)."
    )
    dicomweb_max_instance_bytes: int = Field(
        256 * 1024 * 1024,
        description="Largest instance in a STOW-RS request (refused with 0xA700 above).",
    )

    # --- de-identification and retraining export (anonymizer/) ---------------------------
    deid_options: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated PS3.15 Annex E options on top of the Basic Profile: "
        "retain-safe-private, retain-uids, retain-device-identity, retain-institution-identity, "
        "retain-patient-characteristics, retain-long-full-dates | retain-long-modified-dates, "
        "clean-descriptors, clean-structured-content, clean-graphics.",
    )
    deid_secret: SecretStr | None = Field(
        None,
        description="Site secret keying pseudonymous UIDs, Patient IDs and date shifts; default: "
        "generated once into <data_dir>/deid-secret.",
    )
    deid_date_shift_max_days: int = Field(
        365, description="Modified Dates option: each patient's dates move back 1..N days."
    )
    deid_rules_file: Path | None = Field(
        None,
        description="JSON with pixel-cleaning rectangles per manufacturer/model and the "
        "safe-private element list.",
    )
    deid_burned_in_modalities: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["SC", "US", "OT"],
        description="Modalities treated as carrying burned-in text when BurnedInAnnotation "
        "is absent.",
    )
    deid_pixel_phi: Literal["blank", "hold"] = Field(
        "blank",
        description="Burned-in text that OCR finds in an image leaving the site (retraining "
        "export, xraygate deid): blank it (padded boxes set to their background) or hold the "
        "image for review on the admin page.",
    )
    deid_text_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["L", "R", "LT", "RT", "PA", "AP", "ERECT", "SUPINE", "PORTABLE"],
        description="Comma-separated non-PHI tokens the pixel step leaves in an image "
        "(laterality and view markers).",
    )
    deid_text_min_px: int = Field(
        24,
        ge=8,
        le=200,
        description="Smallest burned-in text size (font pixels) the pixel step must find; "
        "smaller is slower (images are read downscaled to ~17 px letters).",
    )
    export_enabled: bool = Field(True, description="Export de-identified studies for retraining.")
    export_categories: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["indeterminate"],
        description="Comma-separated triage categories exported for retraining.",
    )
    export_margin: float = Field(
        0.05,
        description="Also export low-confidence studies: score within this distance of a "
        "triage threshold.",
    )
    export_corrected: bool = Field(
        True, description="Export any study whose result a clinician corrected."
    )
    export_storage_url: str | None = Field(
        None,
        description="Export object store (a path or s3://bucket/prefix), separate from the "
        "main store; default <data_dir>/export.",
    )
    export_s3_endpoint_url: str | None = Field(None, description="Export store S3 endpoint URL.")
    export_s3_region: str = Field("us-east-1", description="Export store S3 region.")
    export_s3_access_key_id: str | None = Field(None, description="Export store access key.")
    export_s3_secret_access_key: SecretStr | None = Field(
        None, description="Export store secret key."
    )

    @field_validator(
        "deid_options",
        "deid_burned_in_modalities",
        "deid_text_allow",
        "export_categories",
        mode="before",
    )
    @classmethod
    def _deid_csv(cls, value: object) -> object:
        return _split_csv(value)

    log_level: str = Field("INFO", description="Python log level.")
    log_json: bool = Field(False, description="Emit structured JSON logs.")

    @field_validator(
        "allowed_calling_aets",
        "infer_modalities",
        "infer_chest_terms",
        "auth_api_keys",
        "model_trusted_keys",
        "http_trusted_proxies",
        "http_allowed_hosts",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'xraygate.db').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return str((self.data_dir / "objects").resolve())

    @property
    def journal_dir(self) -> Path:
        return self.ingest_journal_dir or self.data_dir / "journal"

    @property
    def tmp_dir(self) -> Path:
        """Where incoming datasets are spooled: inside the data dir, so renames stay atomic."""
        return self.data_dir / "tmp"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
