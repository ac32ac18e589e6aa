#!/usr/bin/env bash
# Write the secrets docker-compose.yaml requires into .env (or FILE), each a fresh random value.
#
#   docker/new-env.sh [FILE]
#
# A variable the file already sets is kept, so running it again only adds what is missing (after
# an upgrade that needs a new secret). The file is private to you (mode 600). Values are
# URL-safe, as they go into database URLs and connection JSON.
set -euo pipefail
umask 077
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FILE=${1:-$ROOT/.env}

random() { head -c "$1" /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }
# Fernet wants exactly 32 bytes, URL-safe base64 with its padding.
fernet() { head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n'; }

touch "$FILE"
chmod 600 "$FILE"
added=0
for name in AIRFLOW_JWT_SECRET AIRFLOW_FERNET_KEY SITEWATCH_PG_ADMIN_PASSWORD \
  SITEWATCH_PG_AIRFLOW_PASSWORD SITEWATCH_PG_OWNER_PASSWORD SITEWATCH_PG_DRAIN_PASSWORD \
  SITEWATCH_PG_ALERTING_PASSWORD SITEWATCH_PG_READER_PASSWORD; do
  grep -q "^$name=." "$FILE" && continue
  case $name in
    AIRFLOW_FERNET_KEY) value=$(fernet) ;;
    AIRFLOW_JWT_SECRET) value=$(random 48) ;;
    *) value=$(random 24) ;;
  esac
  # A trailing line without its newline would swallow ours.
  [ ! -s "$FILE" ] || [ -z "$(tail -c 1 "$FILE")" ] || echo >> "$FILE"
  echo "$name=$value" >> "$FILE"
  added=$((added + 1))
done
echo "docker/new-env.sh: $added secret(s) added to $FILE" >&2
