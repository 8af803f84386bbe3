#!/usr/bin/env bash
# Usage: hdfs-entrypoint namenode|datanode. Writes core-site/hdfs-site from the environment,
# formats the NameNode on first start, then runs the daemon in the foreground.
#
# Kerberos (the same settings tools/hdfs-mini's --secure mode runs in the tests) when
# HDFS_KERBEROS_REALM is set: the daemon logs in as hdfs/<its host> and HTTP/<its host> from the
# keytab mounted at HDFS_KEYTAB (a compose secret, 0400; never baked into the image, never on a
# command line), block access tokens, SASL on RPC and on the data transfer path
# (HDFS_PROTECTION, default privacy: no privileged ports needed), HTTPS only with SPNEGO
# (WebHDFS cannot be switched off in Hadoop 3.5; without this it believes ?user.name=hdfs).
set -euo pipefail
: "${HDFS_NAMENODE_HOST:?set HDFS_NAMENODE_HOST}"
CP="/etc/hadoop:/opt/hadoop/lib/*"
HOST="$(hostname -f)"
REALM="${HDFS_KERBEROS_REALM:-}"
PROTECTION="${HDFS_PROTECTION:-privacy}"
KEYTAB="${HDFS_KEYTAB:-/run/secrets/hdfs.keytab}"
JAVA_OPTS=()

secure_core=""
secure_hdfs=""
if [ -n "$REALM" ]; then
  : "${HDFS_KDC_HOST:?set HDFS_KDC_HOST (the KDC) with HDFS_KERBEROS_REALM}"
  : "${HDFS_KEYSTORE_PASSWORD_FILE:=/run/secrets/hdfs-keystore-password}"
  [ -r "$KEYTAB" ] || { echo "no readable keytab at $KEYTAB" >&2; exit 1; }
  cat > /etc/hadoop/krb5.conf <<KRB
[libdefaults]
  default_realm = ${REALM}
  udp_preference_limit = 1
  dns_lookup_kdc = false
[realms]
  ${REALM} = { kdc = ${HDFS_KDC_HOST} }
KRB
  JAVA_OPTS+=("-Djava.security.krb5.conf=/etc/hadoop/krb5.conf")
  # A self-signed keystore for the HTTPS-only web servers, made once per volume; its password
  # comes from a secret file and reaches keytool through a file, never argv.
  umask 077
  if [ ! -f /data/ssl/keystore.jks ]; then
    mkdir -p /data/ssl
    keytool -genkeypair -alias hdfs -keyalg RSA -keysize 2048 -validity 3650 -dname "CN=${HOST}" \
      -keystore /data/ssl/keystore.jks -storetype JKS \
      -storepass:file "$HDFS_KEYSTORE_PASSWORD_FILE" -keypass:file "$HDFS_KEYSTORE_PASSWORD_FILE" >/dev/null
  fi
  ks_password="$(cat "$HDFS_KEYSTORE_PASSWORD_FILE")"
  cat > /etc/hadoop/ssl-server.xml <<XML
<configuration>
  <property><name>ssl.server.keystore.location</name><value>/data/ssl/keystore.jks</value></property>
  <property><name>ssl.server.keystore.password</name><value>${ks_password}</value></property>
  <property><name>ssl.server.keystore.keypassword</name><value>${ks_password}</value></property>
</configuration>
XML
  secure_core="
  <property><name>hadoop.security.authentication</name><value>kerberos</value></property>
  <property><name>hadoop.security.authorization</name><value>true</value></property>
  <property><name>hadoop.rpc.protection</name><value>${PROTECTION}</value></property>
  <property><name>hadoop.http.authentication.type</name><value>kerberos</value></property>
  <property><name>hadoop.http.authentication.simple.anonymous.allowed</name><value>false</value></property>
  <property><name>hadoop.http.authentication.kerberos.principal</name><value>HTTP/${HOST}@${REALM}</value></property>
  <property><name>hadoop.http.authentication.kerberos.keytab</name><value>${KEYTAB}</value></property>"
  secure_hdfs="
  <property><name>dfs.block.access.token.enable</name><value>true</value></property>
  <property><name>dfs.data.transfer.protection</name><value>${PROTECTION}</value></property>
  <property><name>dfs.http.policy</name><value>HTTPS_ONLY</value></property>
  <property><name>dfs.namenode.https-address</name><value>0.0.0.0:9871</value></property>
  <property><name>dfs.namenode.kerberos.principal</name><value>hdfs/_HOST@${REALM}</value></property>
  <property><name>dfs.namenode.keytab.file</name><value>${KEYTAB}</value></property>
  <property><name>dfs.datanode.kerberos.principal</name><value>hdfs/_HOST@${REALM}</value></property>
  <property><name>dfs.datanode.keytab.file</name><value>${KEYTAB}</value></property>
  <property><name>dfs.web.authentication.kerberos.principal</name><value>HTTP/_HOST@${REALM}</value></property>
  <property><name>dfs.web.authentication.kerberos.keytab</name><value>${KEYTAB}</value></property>"
fi

cat > /etc/hadoop/core-site.xml <<XML
<configuration>
  <property><name>fs.defaultFS</name><value>hdfs://${HDFS_NAMENODE_HOST}:8020</value></property>${secure_core}
</configuration>
XML
cat > /etc/hadoop/hdfs-site.xml <<XML
<configuration>
  <property><name>dfs.namenode.name.dir</name><value>/data/name</value></property>
  <property><name>dfs.datanode.data.dir</name><value>/data/data</value></property>
  <property><name>dfs.replication</name><value>${HDFS_REPLICATION:-1}</value></property>
  <property><name>dfs.namenode.rpc-bind-host</name><value>0.0.0.0</value></property>
  <property><name>dfs.namenode.http-address</name><value>0.0.0.0:9870</value></property>
  <property><name>dfs.permissions.enabled</name><value>true</value></property>
  <property><name>dfs.permissions.superusergroup</name><value>supergroup</value></property>${secure_hdfs}
</configuration>
XML
chmod 600 /etc/hadoop/ssl-server.xml 2>/dev/null || true
case "${1:-}" in
  namenode)
    [ -d /data/name/current ] || java "${JAVA_OPTS[@]}" -cp "$CP" org.apache.hadoop.hdfs.server.namenode.NameNode -format -nonInteractive
    exec java -Xmx${HDFS_HEAP:-1g} "${JAVA_OPTS[@]}" -cp "$CP" org.apache.hadoop.hdfs.server.namenode.NameNode ;;
  datanode)
    exec java -Xmx${HDFS_HEAP:-1g} "${JAVA_OPTS[@]}" -cp "$CP" org.apache.hadoop.hdfs.server.datanode.DataNode ;;
  *) echo "usage: hdfs-entrypoint namenode|datanode" >&2; exit 2 ;;
esac
