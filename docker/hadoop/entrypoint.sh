#!/usr/bin/env bash
# Usage: hdfs-entrypoint namenode|datanode. Writes core-site/hdfs-site from the environment,
# formats the NameNode on first start, then runs the daemon in the foreground.
set -euo pipefail
: "${HDFS_NAMENODE_HOST:?set HDFS_NAMENODE_HOST}"
CP="/etc/hadoop:/opt/hadoop/lib/*"
cat > /etc/hadoop/core-site.xml <<XML
<configuration>
  <property><name>fs.defaultFS</name><value>hdfs://${HDFS_NAMENODE_HOST}:8020</value></property>
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
</configuration>
XML
case "${1:-}" in
  namenode)
    [ -d /data/name/current ] || java -cp "$CP" org.apache.hadoop.hdfs.server.namenode.NameNode -format -nonInteractive
    exec java -Xmx${HDFS_HEAP:-1g} -cp "$CP" org.apache.hadoop.hdfs.server.namenode.NameNode ;;
  datanode)
    exec java -Xmx${HDFS_HEAP:-1g} -cp "$CP" org.apache.hadoop.hdfs.server.datanode.DataNode ;;
  *) echo "usage: hdfs-entrypoint namenode|datanode" >&2; exit 2 ;;
esac
