#!/usr/bin/env bash
# System prerequisites the tests need: Python 3.11, a Java 17 JDK (HDFS, Spark), Maven (Hadoop jars),
# PostgreSQL (make up's metadata database; the tests run their own) and Chromium (the browser test).
# Installs what is missing from Debian's packages when run as root; otherwise says what to install.
set -euo pipefail

missing=()
command -v python3.11 >/dev/null 2>&1 || missing+=(python3.11 python3.11-venv)
# A JDK, not only a JRE: javac builds lakeforge's local file system jar (lakeforge.local_fs).
if ! command -v java >/dev/null 2>&1 || ! java -version 2>&1 | grep -qE 'version "(1[7-9]|2[0-9])' \
   || ! command -v javac >/dev/null 2>&1; then
  missing+=(openjdk-17-jdk-headless)
fi
command -v mvn >/dev/null 2>&1 || missing+=(maven)
# PostgreSQL's server binaries: the tests start their own cluster (tests/postgres_server.py).
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
# Chromium for the browser test of `make up`'s stack (tests/test_stack.py): Playwright from PyPI cannot
# download its own browsers here, it drives Debian's through executable_path.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# MIT Kerberos' GSSAPI library: hdfs-native loads it (dlopen) to authenticate to a Kerberized HDFS
# (tests/test_hdfs_security.py). Keytabs do the rest: no kinit is needed.
ldconfig -p 2>/dev/null | grep -q 'libgssapi_krb5.so.2 ' || missing+=(libgssapi-krb5-2)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "lakeforge needs: ${missing[*]} (install them, then rerun)" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
if [[ " ${missing[*]} " == *" postgresql "* ]] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  # No default cluster on port 5432: nothing here uses one, the tests start their own.
  mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
