"""ASGI middleware of the gateway, built on one observer (``observe``): the request log with HTTP
metrics (``request_log``) and the audit trail of the routes flagged ``AUDITED`` (``audit``)."""
