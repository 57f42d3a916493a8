"""Prometheus metrics of the whole pipeline, defined once here and updated where things happen.

The gateway serves them at ``/metrics``. Names follow Prometheus conventions (``_total`` for
counters, base units).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INSTANCES_RECEIVED = Counter(
    "xraygate_instances_received_total", "DICOM instances accepted by the SCP", ["sop_class"]
)
INSTANCES_REFUSED = Counter(
    "xraygate_instances_refused_total", "C-STORE requests refused, by DICOM status", ["status"]
)
BYTES_RECEIVED = Counter("xraygate_bytes_received_total", "Bytes of DICOM objects stored")
ASSOCIATIONS = Counter("xraygate_associations_total", "DICOM associations by outcome", ["outcome"])
ASSOCIATIONS_ACTIVE = Gauge(
    "xraygate_associations_active", "DICOM connections open on this SCP process (autoscaling)"
)
QUEUE_DEPTH = Gauge("xraygate_queue_depth", "Jobs waiting, by kind and state", ["kind", "state"])
QUEUE_OLDEST_AGE = Gauge(
    "xraygate_queue_oldest_age_seconds", "Age of the oldest pending job, by kind", ["kind"]
)
JOBS_FINISHED = Counter(
    "xraygate_jobs_finished_total", "Job attempts by kind and outcome", ["kind", "outcome"]
)
INFERENCE_SECONDS = Histogram(
    "xraygate_inference_seconds",
    "Time per image by stage: preprocess, model (score), saliency (map)",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
STUDIES_SCORED = Counter("xraygate_studies_scored_total", "Study results by category", ["category"])
OUT_OF_DISTRIBUTION = Counter(
    "xraygate_out_of_distribution_total",
    "Images a model version's OOD gate refused to score",
    ["model_version"],
)
DELIVERIES = Counter(
    "xraygate_deliveries_total", "Result deliveries by channel and outcome", ["channel", "outcome"]
)
DEID_EXPORTS = Counter(
    "xraygate_deid_exports_total", "De-identified exports by outcome", ["outcome"]
)
FEEDBACK = Counter(
    "xraygate_feedback_total", "Clinician feedback by agreement with the model", ["agreement"]
)

# --- gateway (gateway/) ------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "xraygate_http_requests_total",
    "HTTP requests by route template, method and status class",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "xraygate_http_request_seconds",
    "HTTP request duration by route template",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
AUDIT_EVENTS = Counter(
    "xraygate_audit_events_total", "Audit records of patient-data access by outcome", ["outcome"]
)
AUTH_FAILURES = Counter(
    "xraygate_auth_failures_total", "Refused HTTP credentials by reason", ["reason"]
)
MODEL_INFO = Gauge(
    "xraygate_model_info",
    "Registered model versions (1) by state, read at scrape time",
    ["model", "state"],
)
STUDIES_BY_CATEGORY = Gauge(
    "xraygate_studies_by_category",
    "Emitted (non-shadow) study results by category (read from the database at scrape time)",
    ["category"],
)
SCORE_DISTRIBUTION = Gauge(
    "xraygate_study_scores",
    "Emitted study results by score decile: decile 0.3 counts [0.3, 0.4) (scrape time)",
    ["decile"],
)

# --- model quality from clinicians' labels (core/quality/gauges.py, read at scrape time) -----
_VERSION = ["model_version", "state"]
MODEL_RESULTS = Gauge(
    "xraygate_model_results",
    "Study results of a model version in the quality window (shadow versions included)",
    _VERSION,
)
MODEL_LABELLED = Gauge(
    "xraygate_model_labelled_studies",
    "Results of a model version in the quality window with a clinician's finding",
    _VERSION,
)
MODEL_AGREEMENT = Gauge(
    "xraygate_model_agreement_ratio",
    "Share of labelled studies whose category states the clinician's finding",
    _VERSION,
)
MODEL_SENSITIVITY = Gauge(
    "xraygate_model_sensitivity_ratio", "Sensitivity at the high threshold (labelled)", _VERSION
)
MODEL_SPECIFICITY = Gauge(
    "xraygate_model_specificity_ratio", "Specificity at the high threshold (labelled)", _VERSION
)
MODEL_PPV_HIGH = Gauge(
    "xraygate_model_ppv_high_ratio", "Share of labelled high-risk results with pneumonia", _VERSION
)
MODEL_NPV_LOW = Gauge(
    "xraygate_model_npv_low_ratio", "Share of labelled low-risk results without pneumonia", _VERSION
)
MODEL_INDETERMINATE = Gauge(
    "xraygate_model_indeterminate_ratio", "Share of a version's results indeterminate", _VERSION
)
MODEL_OOD = Gauge(
    "xraygate_model_out_of_distribution_ratio",
    "Share of a version's results with an image outside its training distribution",
    _VERSION,
)
MODEL_AUROC = Gauge("xraygate_model_auroc", "AUROC on labelled studies (when enough)", _VERSION)
MODEL_ECE = Gauge("xraygate_model_ece", "Expected calibration error on labelled studies", _VERSION)
MODEL_PSI = Gauge(
    "xraygate_model_score_psi",
    "Population stability index of the scores against the version's validation scores",
    _VERSION,
)
MODEL_KS = Gauge(
    "xraygate_model_score_ks",
    "Kolmogorov-Smirnov statistic of the scores against the version's validation scores",
    _VERSION,
)
LAST_RESULT = Gauge(
    "xraygate_last_result_timestamp_seconds",
    "Unix time of the newest emitted study result (scrape time)",
)
