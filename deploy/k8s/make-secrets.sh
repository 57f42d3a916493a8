#!/bin/sh
# Print the xraygate-secrets Secret the pods read (envFrom secretRef), with random keys for
# bearer tokens, sessions and de-identification; the database URL and S3 keys come from the
# environment (they are issued by your database and storage administrators):
#
#   XRAYGATE_DATABASE_URL=postgresql://xraygate:...@postgres.database.svc:5432/xraygate \
#   XRAYGATE_S3_ACCESS_KEY_ID=... XRAYGATE_S3_SECRET_ACCESS_KEY=... \
#   sh deploy/k8s/make-secrets.sh | kubectl apply -f -
#
# Apply it once: running it again makes new keys (signed sessions end, pseudonyms change).
# Export S3 keys default to the main ones. Nothing here is ever written to disk.
set -eu
: "${XRAYGATE_DATABASE_URL:?set XRAYGATE_DATABASE_URL}"
: "${XRAYGATE_S3_ACCESS_KEY_ID:?set XRAYGATE_S3_ACCESS_KEY_ID}"
: "${XRAYGATE_S3_SECRET_ACCESS_KEY:?set XRAYGATE_S3_SECRET_ACCESS_KEY}"

random() {  # 32 random bytes as 64 hex digits
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

quote() {  # a YAML single-quoted scalar
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"
}

cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: xraygate-secrets
  namespace: xraygate
  labels:
    app.kubernetes.io/part-of: xraygate
type: Opaque
stringData:
  XRAYGATE_DATABASE_URL: $(quote "$XRAYGATE_DATABASE_URL")
  XRAYGATE_S3_ACCESS_KEY_ID: $(quote "$XRAYGATE_S3_ACCESS_KEY_ID")
  XRAYGATE_S3_SECRET_ACCESS_KEY: $(quote "$XRAYGATE_S3_SECRET_ACCESS_KEY")
  XRAYGATE_EXPORT_S3_ACCESS_KEY_ID: $(quote "${XRAYGATE_EXPORT_S3_ACCESS_KEY_ID:-$XRAYGATE_S3_ACCESS_KEY_ID}")
  XRAYGATE_EXPORT_S3_SECRET_ACCESS_KEY: $(quote "${XRAYGATE_EXPORT_S3_SECRET_ACCESS_KEY:-$XRAYGATE_S3_SECRET_ACCESS_KEY}")
  XRAYGATE_AUTH_SHARED_SECRET: '$(random)'
  XRAYGATE_SESSION_SECRET: '$(random)'
  XRAYGATE_DEID_SECRET: '$(random)'
YAML
