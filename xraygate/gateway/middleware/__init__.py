"""ASGI middleware of the gateway: the request log and the audit trail."""
