#!/bin/sh
# Generate the Compose stack's secrets as files under deploy/secrets/ (or $1; the directory is
# mode 0700, the files 0644 so that the containers' own users can read their bind mounts):
# random keys for the gateway's tokens and sessions, the de-identification key, the PostgreSQL
# and MinIO passwords, and the database URL that carries the PostgreSQL one. Compose mounts them
# at /run/secrets/ and xraygate reads them there (XRAYGATE_SECRETS_DIR). Existing files are kept,
# so running it again never changes a key that signed tokens or pseudonyms.
#
#   sh deploy/make-secrets.sh && docker compose up -d --build
set -eu
dir="${1:-$(dirname "$0")/secrets}"
umask 022
mkdir -p "$dir"
chmod 700 "$dir"

random() {  # 32 random bytes as 64 hex digits
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

keep_or_write() {  # keep_or_write NAME VALUE
    [ -s "$dir/$1" ] || printf '%s' "$2" > "$dir/$1"
}

keep_or_write xraygate_auth_shared_secret "$(random)"
keep_or_write xraygate_session_secret "$(random)"
keep_or_write xraygate_deid_secret "$(random)"
keep_or_write postgres_password "$(random)"
keep_or_write minio_root_password "$(random)"
keep_or_write xraygate_database_url \
    "postgresql://xraygate:$(cat "$dir/postgres_password")@postgres:5432/xraygate"
echo "secrets in $dir"
