package dev.lakeforge.hdfs;

import java.io.File;
import java.io.FileOutputStream;
import java.io.OutputStream;
import java.nio.file.Files;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.DFSConfigKeys;
import org.apache.hadoop.hdfs.MiniDFSCluster;

/**
 * Starts a real HDFS (one NameNode, two DataNodes) on 127.0.0.1 and keeps it up until stdin closes.
 *
 * <p>Usage: {@code MiniHdfs <base-dir> <namenode-rpc-port> <namenode-http-port>}. When the cluster
 * is ready (safe mode left) it writes {@code <base-dir>/conf/core-site.xml} and prints one line
 * {@code READY hdfs://127.0.0.1:<port>} on stdout; everything else goes to stderr. Closing stdin
 * (or SIGTERM) shuts it down cleanly, so a parent process that dies takes HDFS with it.
 */
public final class MiniHdfs {
  private MiniHdfs() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 3) {
      System.err.println("usage: MiniHdfs <base-dir> <namenode-rpc-port> <namenode-http-port>");
      System.exit(2);
    }
    File base = new File(args[0]).getAbsoluteFile();
    int rpcPort = Integer.parseInt(args[1]);
    int httpPort = Integer.parseInt(args[2]);

    Configuration conf = new Configuration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, new File(base, "data").getPath());
    // Two DataNodes and replication 2, so a file can be closed while its last block is COMMITTED
    // but not yet reported (HDFS-8999 allows that only when expected replicas > min replication).
    // Without it every file close waits for the DataNode's block report: the clients back off
    // 400-500 ms per file, which made each small partition publish cost ~1 s.
    conf.setInt(DFSConfigKeys.DFS_REPLICATION_KEY, 2);
    conf.setInt("dfs.namenode.file.close.num-committed-allowed", 1);
    conf.set(DFSConfigKeys.DFS_NAMENODE_HTTP_ADDRESS_KEY, "127.0.0.1:" + httpPort);
    // Loopback only: DataNode transfer, IPC and HTTP on ephemeral 127.0.0.1 ports.
    conf.set(DFSConfigKeys.DFS_DATANODE_ADDRESS_KEY, "127.0.0.1:0");
    conf.set(DFSConfigKeys.DFS_DATANODE_IPC_ADDRESS_KEY, "127.0.0.1:0");
    conf.set(DFSConfigKeys.DFS_DATANODE_HTTP_ADDRESS_KEY, "127.0.0.1:0");
    conf.setBoolean("dfs.permissions.enabled", false);

    final MiniDFSCluster cluster =
        new MiniDFSCluster.Builder(conf)
            .nameNodePort(rpcPort)
            .nameNodeHttpPort(httpPort)
            .numDataNodes(2)
            .format(true)
            .build();
    cluster.waitActive();
    cluster.waitClusterUp();

    Runtime.getRuntime().addShutdownHook(new Thread(cluster::shutdown, "mini-hdfs-shutdown"));

    String uri = "hdfs://127.0.0.1:" + cluster.getNameNodePort();
    File confDir = new File(base, "conf");
    Files.createDirectories(confDir.toPath());
    Configuration client = new Configuration(false);
    client.set("fs.defaultFS", uri);
    client.setInt("dfs.replication", 2);
    try (OutputStream out = new FileOutputStream(new File(confDir, "core-site.xml"))) {
      client.writeXml(out);
    }

    System.out.println("READY " + uri);
    System.out.flush();

    // Block until the parent closes our stdin (or dies), then stop.
    while (System.in.read() != -1) {
      // ignore input
    }
    cluster.shutdown();
    System.exit(0);
  }
}
