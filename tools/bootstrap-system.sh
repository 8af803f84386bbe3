#!/usr/bin/env bash
# System prerequisites the tests need: Python 3.11, a Java 17 JDK (HDFS, Spark) and Maven (Hadoop jars).
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

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "lakeforge needs: ${missing[*]} (install them, then rerun)" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
