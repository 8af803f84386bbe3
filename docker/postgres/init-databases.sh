#!/usr/bin/env bash
# One database and one owner per service; passwords come from the environment, never defaults.
set -euo pipefail
: "${AIRFLOW_DB_PASSWORD:?}" "${MLFLOW_DB_PASSWORD:?}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" \
  -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v mlflow_pw="$MLFLOW_DB_PASSWORD" <<'SQL'
CREATE USER airflow WITH PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE USER mlflow WITH PASSWORD :'mlflow_pw';
CREATE DATABASE mlflow OWNER mlflow;
SQL
