"""The HTTP gateway (FastAPI): health and readiness probes, Prometheus metrics, and the APIs."""
