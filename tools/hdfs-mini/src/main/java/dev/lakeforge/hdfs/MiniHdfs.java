package dev.lakeforge.hdfs;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.DFSConfigKeys;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.minikdc.MiniKdc;
import org.apache.hadoop.security.ssl.KeyStoreTestUtil;

/**
 * Starts a real HDFS (one NameNode, two DataNodes) on 127.0.0.1 and keeps it up until stdin closes.
 *
 * <p>Usage: {@code MiniHdfs <base-dir> <namenode-rpc-port> <namenode-http-port> [options]}. When the
 * cluster is ready (safe mode left) it writes {@code <base-dir>/conf/core-site.xml} and prints one
 * line {@code READY hdfs://127.0.0.1:<port> <web-url>} on stdout; everything else goes to stderr. Closing stdin
 * (or SIGTERM) shuts it down cleanly, so a parent process that dies takes HDFS with it.
 *
 * <p>WebHDFS cannot be turned off in Hadoop 3.5 (the NameNode's HTTP server always mounts
 * {@code /webhdfs/v1}; {@code dfs.webhdfs.enabled} no longer exists). Without Kerberos it believes
 * {@code ?user.name=hdfs} as RPC believes {@code HADOOP_USER_NAME}; with {@code --secure} it is
 * HTTPS only and demands SPNEGO (a Kerberos ticket) or a delegation token.
 *
 * <p>Options:
 * <ul>
 *   <li>{@code --permissions}: {@code dfs.permissions.enabled=true} (owners and modes are enforced;
 *       the superuser is the user running this JVM, or {@code hdfs} when secure).
 *   <li>{@code --secure}: Kerberos. Starts Hadoop's MiniKdc in this JVM, gives the NameNode and the
 *       DataNodes the principal {@code hdfs/localhost} from a keytab, turns on block access tokens,
 *       SASL on the data transfer path ({@code dfs.data.transfer.protection}, no privileged ports),
 *       HTTPS only (a DataNode refuses to start secure without privileged ports unless its HTTP
 *       port is HTTPS). Implies {@code --permissions}. Writes, under
 *       {@code <base-dir>/krb} (0700): {@code krb5.conf} and one keytab (0600) per client principal
 *       ({@code <user>.keytab} for {@code <user>@EXAMPLE.COM}; {@code hdfs} is the superuser).
 *   <li>{@code --users a,b}: the client principals to create when secure (default {@code lakeforge}).
 *   <li>{@code --protection authentication|integrity|privacy}: RPC and data transfer protection
 *       when secure (default {@code privacy}: both are encrypted).
 * </ul>
 */
public final class MiniHdfs {
  private MiniHdfs() {}

  static final String SERVICE_HOST = "localhost";

  public static void main(String[] args) throws Exception {
    if (args.length < 3) {
      System.err.println("usage: MiniHdfs <base-dir> <namenode-rpc-port> <namenode-http-port>"
          + " [--permissions] [--secure] [--users a,b] [--protection authentication|integrity|privacy]");
      System.exit(2);
    }
    File base = new File(args[0]).getAbsoluteFile();
    int rpcPort = Integer.parseInt(args[1]);
    int httpPort = Integer.parseInt(args[2]);
    boolean permissions = false;
    boolean secure = false;
    String users = "lakeforge";
    String protection = "privacy";
    for (int i = 3; i < args.length; i++) {
      switch (args[i]) {
        case "--permissions": permissions = true; break;
        case "--secure": secure = true; permissions = true; break;
        case "--users": users = args[++i]; break;
        case "--protection": protection = args[++i]; break;
        default:
          System.err.println("unknown option " + args[i]);
          System.exit(2);
      }
    }

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
    conf.setBoolean("dfs.permissions.enabled", permissions);
    conf.set("dfs.permissions.superusergroup", "supergroup");

    Configuration client = new Configuration(false);
    MiniKdc kdc = secure ? secure(conf, client, base, users.split(","), protection) : null;

    final MiniDFSCluster cluster;
    try {
      cluster = new MiniDFSCluster.Builder(conf)
          .nameNodePort(rpcPort)
          .nameNodeHttpPort(httpPort)
          .numDataNodes(2)
          .format(true)
          .build();
      cluster.waitActive();
      cluster.waitClusterUp();
    } catch (Exception e) {
      if (kdc != null) {
        kdc.stop();
      }
      throw e;
    }

    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      cluster.shutdown();
      if (kdc != null) {
        kdc.stop();
      }
    }, "mini-hdfs-shutdown"));

    String uri = "hdfs://127.0.0.1:" + cluster.getNameNodePort();
    File confDir = new File(base, "conf");
    Files.createDirectories(confDir.toPath());
    client.set("fs.defaultFS", uri);
    client.setInt("dfs.replication", 2);
    try (OutputStream out = new FileOutputStream(new File(confDir, "core-site.xml"))) {
      client.writeXml(out);
    }

    // The NameNode's web address after the URI (older readers take only the second word).
    java.net.InetSocketAddress web = secure
        ? cluster.getNameNode().getHttpsAddress() : cluster.getNameNode().getHttpAddress();
    System.out.println("READY " + uri + " " + (secure ? "https" : "http") + "://127.0.0.1:" + web.getPort());
    System.out.flush();

    // Block until the parent closes our stdin (or dies), then stop.
    while (System.in.read() != -1) {
      // ignore input
    }
    System.exit(0);  // the shutdown hook stops HDFS, then the KDC
  }

  /** Starts the KDC, writes principals' keytabs and sets the server ({@code conf}) and client
   * ({@code client}) configuration for Kerberos, block tokens, SASL data transfer and HTTPS. */
  private static MiniKdc secure(Configuration conf, Configuration client, File base, String[] users,
                                String protection) throws Exception {
    File krb = new File(base, "krb");
    privateDir(krb);
    File kdcDir = new File(krb, "kdc");
    privateDir(kdcDir);
    Properties kdcConf = MiniKdc.createConf();
    kdcConf.setProperty(MiniKdc.KDC_BIND_ADDRESS, "127.0.0.1");
    kdcConf.setProperty(MiniKdc.INSTANCE, "lakeforge");
    MiniKdc kdc = new MiniKdc(kdcConf, kdcDir);
    kdc.start();  // sets java.security.krb5.conf for this JVM
    String realm = kdc.getRealm();

    // The daemons' keytab: NameNode and DataNodes as hdfs/localhost, SPNEGO as HTTP/localhost.
    File serviceKeytab = keytab(krb, "service");
    kdc.createPrincipal(serviceKeytab, "hdfs/" + SERVICE_HOST, "HTTP/" + SERVICE_HOST);
    restrict(serviceKeytab);
    List<String> clients = new ArrayList<>(List.of("hdfs"));
    for (String user : users) {
      if (!user.isBlank() && !clients.contains(user.trim())) {
        clients.add(user.trim());
      }
    }
    for (String user : clients) {
      File kt = keytab(krb, user);
      kdc.createPrincipal(kt, user);
      restrict(kt);
    }
    // Clients (MIT krb5, Java) read the KDC's address from here; TCP only (the KDC has no UDP).
    Path krb5conf = new File(krb, "krb5.conf").toPath();
    Files.copy(kdc.getKrb5conf().toPath(), krb5conf, StandardCopyOption.REPLACE_EXISTING);

    String nnPrincipal = "hdfs/" + SERVICE_HOST + "@" + realm;
    for (Configuration c : new Configuration[] {conf, client}) {
      c.set("hadoop.security.authentication", "kerberos");
      c.setBoolean("hadoop.security.authorization", true);
      c.set("hadoop.rpc.protection", protection);
      c.set(DFSConfigKeys.DFS_DATA_TRANSFER_PROTECTION_KEY, protection);
      c.set(DFSConfigKeys.DFS_NAMENODE_KERBEROS_PRINCIPAL_KEY, nnPrincipal);
    }
    conf.set(DFSConfigKeys.DFS_NAMENODE_KEYTAB_FILE_KEY, serviceKeytab.getPath());
    conf.set(DFSConfigKeys.DFS_DATANODE_KERBEROS_PRINCIPAL_KEY, nnPrincipal);
    conf.set(DFSConfigKeys.DFS_DATANODE_KEYTAB_FILE_KEY, serviceKeytab.getPath());
    conf.set(DFSConfigKeys.DFS_WEB_AUTHENTICATION_KERBEROS_PRINCIPAL_KEY, "HTTP/" + SERVICE_HOST + "@" + realm);
    conf.set(DFSConfigKeys.DFS_WEB_AUTHENTICATION_KERBEROS_KEYTAB_KEY, serviceKeytab.getPath());
    conf.setBoolean(DFSConfigKeys.DFS_BLOCK_ACCESS_TOKEN_ENABLE_KEY, true);
    // The NameNode's and DataNodes' HTTP servers (UI, fsimage transfer, WebHDFS): HTTPS only,
    // SPNEGO-authenticated (the HTTP/ principal above), on loopback. WebHDFS's filter follows
    // hadoop.http.authentication.type, whose default "simple" believes ?user.name=hdfs even on a
    // Kerberized cluster (measured: LISTSTATUS answered 200): kerberos, no anonymous access.
    conf.set("hadoop.http.authentication.type", "kerberos");
    conf.set("hadoop.http.authentication.kerberos.principal", "HTTP/" + SERVICE_HOST + "@" + realm);
    conf.set("hadoop.http.authentication.kerberos.keytab", serviceKeytab.getPath());
    conf.setBoolean("hadoop.http.authentication.simple.anonymous.allowed", false);
    conf.set(DFSConfigKeys.DFS_HTTP_POLICY_KEY, "HTTPS_ONLY");
    conf.set(DFSConfigKeys.DFS_NAMENODE_HTTPS_ADDRESS_KEY, "127.0.0.1:0");
    conf.set(DFSConfigKeys.DFS_DATANODE_HTTPS_ADDRESS_KEY, "127.0.0.1:0");
    // A self-signed keystore/truststore for those HTTPS servers (Hadoop's test utility). The
    // ssl-*.xml files are read as class path resources: give this thread a loader that sees them.
    File ssl = new File(krb, "ssl");
    privateDir(ssl);
    KeyStoreTestUtil.setupSSLConfig(ssl.getPath(), ssl.getPath(), conf, false);
    conf.set(DFSConfigKeys.DFS_CLIENT_HTTPS_KEYSTORE_RESOURCE_KEY, KeyStoreTestUtil.getClientSSLConfigFileName());
    conf.set(DFSConfigKeys.DFS_SERVER_HTTPS_KEYSTORE_RESOURCE_KEY, KeyStoreTestUtil.getServerSSLConfigFileName());
    ClassLoader withSsl = new URLClassLoader(new URL[] {ssl.toURI().toURL()},
        Thread.currentThread().getContextClassLoader());
    Thread.currentThread().setContextClassLoader(withSsl);
    conf.setClassLoader(withSsl);
    return kdc;
  }

  private static File keytab(File dir, String name) throws IOException {
    File kt = new File(dir, name + ".keytab");
    Files.deleteIfExists(kt.toPath());
    // Created 0600 before a byte of key is written into it.
    Files.createFile(kt.toPath(), PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
    return kt;
  }

  private static void restrict(File file) throws IOException {
    Files.setPosixFilePermissions(file.toPath(), PosixFilePermissions.fromString("rw-------"));
  }

  private static void privateDir(File dir) throws IOException {
    Files.createDirectories(dir.toPath());
    Files.setPosixFilePermissions(dir.toPath(), PosixFilePermissions.fromString("rwx------"));
  }
}
