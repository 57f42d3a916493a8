# One image for every xraygate role: `scp`, `worker`, `gateway`, `db upgrade` (compose.yaml,
# deploy/k8s). CPU TensorFlow; runs as an unprivileged user.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY xraygate ./xraygate
RUN pip wheel --no-cache-dir --wheel-dir /wheels . "tensorflow-cpu>=2.16"

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="xraygate" \
      org.opencontainers.image.description="AI triage of chest X-rays (demonstration model, not for clinical use)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 xraygate \
 && useradd --system --uid 10001 --gid xraygate --home-dir /var/lib/xraygate --create-home xraygate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels xraygate "tensorflow-cpu>=2.16" \
 && rm -rf /wheels
ENV XRAYGATE_DATA_DIR=/var/lib/xraygate \
    XRAYGATE_LOG_JSON=true \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /var/lib/xraygate
USER 10001:10001
EXPOSE 8080 11112 9100
ENTRYPOINT ["xraygate"]
CMD ["serve"]
