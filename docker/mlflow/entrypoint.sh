#!/bin/sh
# The MLflow server behind MLflow's basic-auth app (lakeforge.mlflow_auth): no request but /health
# is served without an account. The admin password comes from a secret file (never the command
# line or the environment); the auth ini (0600), the auth database and the CSRF key live in
# $MLFLOW_AUTH_STATE_DIR (0700), in the service's own volume mounted at /var/lib/lakeforge (the
# image creates that folder owned by lakeforge, so a new volume is too). The backend store URI (it
# carries the database password) stays in MLFLOW_BACKEND_STORE_URI. Accounts and grants: the
# mlflow-auth-init service (`python -m lakeforge.mlflow_auth init`) once the server is healthy.
set -eu
: "${MLFLOW_AUTH_STATE_DIR:=/var/lib/lakeforge/mlflow-auth}"
: "${MLFLOW_ADMIN_PASSWORD_FILE:=/run/secrets/mlflow/admin.password}"
umask 077
exec python -m lakeforge.mlflow_auth serve --state-dir "$MLFLOW_AUTH_STATE_DIR" \
    --admin-password-file "$MLFLOW_ADMIN_PASSWORD_FILE" -- \
    mlflow server --host 0.0.0.0 --port 5000 --workers 2 \
    --artifacts-destination file:///mlartifacts --serve-artifacts "$@"
