package lakeforge.hadoop;

import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsAction;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * lakeforge's {@code file://} file system for Spark (fs.file.impl): Hadoop's LocalFileSystem over
 * {@link Raw}, a RawLocalFileSystem that sets permissions in-process (java.nio). Without Hadoop's
 * native library, RawLocalFileSystem runs a `chmod` child process for every directory and file it
 * creates (~3 ms each; thousands in a partitioned write of a year).
 *
 * <p>It is a LocalFileSystem because Hadoop casts to one: {@code FileSystem.getLocal(conf)} returns
 * {@code (LocalFileSystem) FileSystem.get("file:///", conf)}, and {@code copyToLocalFile} (MLflow's
 * Spark model logging when the default file system is HDFS) goes through it. It writes and verifies
 * no {@code .crc} side files, like RawLocalFileSystem: the lake's manifests list exactly the data
 * files. A caller may still ask one instance for checksums ({@code setWriteChecksum(true)}).
 * Built by lakeforge.local_fs.
 */
public class NioLocalFileSystem extends LocalFileSystem {
  public NioLocalFileSystem() {
    super(new Raw());
  }

  @Override
  public void initialize(URI name, Configuration conf) throws IOException {
    super.initialize(name, conf);  // Hadoop 3.5 sets checksum verification from fs.file.checksum.verify here
    setWriteChecksum(false);
    setVerifyChecksum(false);
  }

  /** RawLocalFileSystem with {@code setPermission} done by java.nio instead of a chmod process. */
  public static class Raw extends RawLocalFileSystem {
    @Override
    public void setPermission(Path p, FsPermission permission) throws IOException {
      if (permission.getStickyBit()) {  // not expressible with java.nio: Hadoop's own way
        super.setPermission(p, permission);
        return;
      }
      Set<PosixFilePermission> perms = EnumSet.noneOf(PosixFilePermission.class);
      add(perms, permission.getUserAction(),
          PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE);
      add(perms, permission.getGroupAction(),
          PosixFilePermission.GROUP_READ, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_EXECUTE);
      add(perms, permission.getOtherAction(),
          PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_EXECUTE);
      Files.setPosixFilePermissions(pathToFile(p).toPath(), perms);
    }

    private static void add(Set<PosixFilePermission> out, FsAction action,
                            PosixFilePermission read, PosixFilePermission write, PosixFilePermission execute) {
      if (action.implies(FsAction.READ)) out.add(read);
      if (action.implies(FsAction.WRITE)) out.add(write);
      if (action.implies(FsAction.EXECUTE)) out.add(execute);
    }
  }
}
