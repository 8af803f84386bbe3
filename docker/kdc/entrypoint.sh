#!/usr/bin/env bash
# Usage: kdc-entrypoint serve|rotate. The stack's KDC (MIT krb5) for the realm KDC_REALM.
#
# serve (the service): on the first start creates the realm in /var/lib/krb5kdc (the `kdc`
#   volume) with a generated master password (kept there, 0600; the stash file holds the key), then
#   on every start makes sure each principal exists (random keys: no principal has a password) and
#   exports each missing keytab into KDC_EXPORT_DIR (docker/secrets/ on the host, 0700), 0400 and
#   owned by the uid of the one container user that reads it, then runs krb5kdc in the foreground:
#     hdfs_keytab_<host>   hdfs/<host>, HTTP/<host>   uid 50001 (hdfs)   each NameNode/DataNode host
#     hdfs_admin_keytab    hdfs (the HDFS superuser)    uid 0 (lake-init runs as root)
#     lakeforge_keytab     lakeforge                    uid 50000 (scheduler, spark-worker)
#   Compose reads these files as secrets (`file:`): outside swarm it bind-mounts them as they are,
#   which is why their owner and mode are set here.
# rotate (`docker compose exec kdc kdc-entrypoint rotate`): new random keys for every principal
#   above, keytabs re-exported; recreate the HDFS daemons and the clients afterwards.
#
# No key or password is ever an argument of a command (ps) or part of the image: the master
# password reaches kdb5_util on its stdin, principals get -randkey, keytabs are written to files.
set -euo pipefail
: "${KDC_REALM:?set KDC_REALM}"
HOSTS="${KDC_HDFS_HOSTS:-namenode datanode-1 datanode-2}"
HDFS_UID="${KDC_HDFS_UID:-50001}"
LAKEFORGE_UID="${KDC_LAKEFORGE_UID:-50000}"
ADMIN_UID="${KDC_ADMIN_KEYTAB_UID:-0}"
DB=/var/lib/krb5kdc
EXPORT="${KDC_EXPORT_DIR:-/export}"
export KRB5_CONFIG=/etc/krb5.conf KRB5_KDC_PROFILE=/etc/krb5kdc/kdc.conf
umask 077

mkdir -p /etc/krb5kdc "$DB" "$EXPORT"
chmod 700 "$DB" "$EXPORT"
cat > /etc/krb5.conf <<KRB
[libdefaults]
  default_realm = ${KDC_REALM}
  dns_lookup_kdc = false
  dns_lookup_realm = false
[realms]
  ${KDC_REALM} = { kdc = 127.0.0.1 }
KRB
cat > /etc/krb5kdc/kdc.conf <<KDC
[kdcdefaults]
  kdc_ports = 88
  kdc_tcp_ports = 88
[realms]
  ${KDC_REALM} = {
    database_name = ${DB}/principal
    key_stash_file = ${DB}/stash
    acl_file = /etc/krb5kdc/kadm5.acl
    max_life = 10h 0m 0s
    max_renewable_life = 7d 0h 0m 0s
    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    default_principal_flags = +preauth
  }
[logging]
  kdc = STDERR
KDC
: > /etc/krb5kdc/kadm5.acl  # no remote administration (kadmind does not run)
chmod 644 /etc/krb5.conf /etc/krb5kdc/kdc.conf

kadm() { kadmin.local -r "$KDC_REALM" -q "$1" >/dev/null; }

create_realm() {
  [ -f "$DB/principal" ] && return 0
  head -c 48 /dev/urandom | base64 -w0 > "$DB/master.password"
  { cat "$DB/master.password"; echo; cat "$DB/master.password"; echo; } \
    | kdb5_util -r "$KDC_REALM" create -s >/dev/null
  echo "kdc: realm ${KDC_REALM} created"
}

ensure_principal() {
  local out
  out="$(kadmin.local -r "$KDC_REALM" -q "getprinc $1" 2>&1 || true)"
  case "$out" in
    *"Principal: $1@${KDC_REALM}"*) ;;
    *) kadm "addprinc -randkey $1" ;;
  esac
}

# export_keytab NAME UID ROTATE PRINCIPAL...: written aside, then moved into place whole.
export_keytab() {
  local name="$1" uid="$2" rotate="$3"; shift 3
  local target="$EXPORT/$name" tmp="$EXPORT/.$name.tmp"
  [ "$rotate" = yes ] || [ ! -s "$target" ] || return 0
  rm -f "$tmp"
  if [ "$rotate" = yes ]; then
    kadm "ktadd -k $tmp $*"              # new random keys (kvno + 1)
  else
    kadm "ktadd -k $tmp -norandkey $*"   # the current keys, unchanged
  fi
  chown "$uid:$uid" "$tmp"
  chmod 0400 "$tmp"
  mv -f "$tmp" "$target"
  echo "kdc: $target ($*) uid $uid 0400"
}

keytabs() {
  local rotate="$1" host principals
  for host in $HOSTS; do
    ensure_principal "hdfs/$host"
    ensure_principal "HTTP/$host"
    export_keytab "hdfs_keytab_$host" "$HDFS_UID" "$rotate" "hdfs/$host" "HTTP/$host"
  done
  ensure_principal hdfs
  export_keytab hdfs_admin_keytab "$ADMIN_UID" "$rotate" hdfs
  ensure_principal lakeforge
  export_keytab lakeforge_keytab "$LAKEFORGE_UID" "$rotate" lakeforge
}

case "${1:-serve}" in
  serve)
    rm -f "$DB/.exported"
    create_realm
    keytabs no
    touch "$DB/.exported"   # the healthcheck: keytabs are in place
    exec krb5kdc -n ;;
  rotate)
    [ -f "$DB/principal" ] || { echo "kdc: no realm yet (start the service first)" >&2; exit 1; }
    keytabs yes
    echo "kdc: keys rotated; now: docker compose up -d --force-recreate namenode datanode-1 datanode-2 lake-init airflow-scheduler spark-worker" ;;
  *) echo "usage: kdc-entrypoint serve|rotate" >&2; exit 2 ;;
esac
