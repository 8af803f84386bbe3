#!/usr/bin/env bash
# One database and one owner per service. Passwords come from the compose secrets mounted for the
# postgres service only (/run/secrets/*, 0400): never defaults. They reach psql through its own
# environment (\getenv, psql 15+), not its command line (which every local user sees in ps).
set -euo pipefail
secret() {
  local value
  value="$(cat "${SECRETS_DIR:-/run/secrets}/$1")"
  [ -n "$value" ] || { echo "init-databases: ${SECRETS_DIR:-/run/secrets}/$1 is empty: set it in docker/.env" >&2; return 1; }
  printf '%s' "$value"
}
AIRFLOW_PW="$(secret airflow_db_password)"
MLFLOW_PW="$(secret mlflow_db_password)"
export AIRFLOW_PW MLFLOW_PW
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<'SQL'
\getenv airflow_pw AIRFLOW_PW
\getenv mlflow_pw MLFLOW_PW
CREATE USER airflow WITH PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
CREATE USER mlflow WITH PASSWORD :'mlflow_pw';
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
SQL
