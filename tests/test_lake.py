import pyarrow.fs as pafs
import pytest

from lakeforge.lake import Lake, LakeError, backend_name, resolve
from tests.helpers import ShortReads


def test_resolve_local_forms(tmp_path):
    for uri in (str(tmp_path), f"file://{tmp_path}"):
        fs, path = resolve(uri)
        assert isinstance(fs, pafs.LocalFileSystem)
        assert path == str(tmp_path)


def test_resolve_rejects_unknown_schemes():
    with pytest.raises(LakeError, match="unsupported lake URI scheme 's3'"):
        resolve("s3://bucket/lake")
    with pytest.raises(LakeError, match="must be local"):
        resolve("file://otherhost/lake")


@pytest.mark.hdfs
def test_resolve_hdfs_without_libhdfs_uses_hdfs_native(hdfs):
    fs, path = resolve(f"{hdfs.uri}/some/lake")
    assert path == "/some/lake"
    # No libhdfs.so on this machine: the pure-Rust client, behind the same pyarrow.fs API.
    assert backend_name(fs) == "py:hdfs_native"


def test_round_trip_and_listing(lake: Lake):
    lake.write_bytes("raw/t/ds=2013-01-01/a.csv", b"x,y\n1,2\n")
    lake.write_bytes("raw/t/ds=2013-01-02/b.csv", b"x,y\n3,4\n")
    assert lake.read_bytes("raw/t/ds=2013-01-01/a.csv") == b"x,y\n1,2\n"
    assert lake.listdir("raw/t") == ["ds=2013-01-01", "ds=2013-01-02"]
    assert [(f.path, f.size) for f in lake.files("raw/t")] == [
        ("ds=2013-01-01/a.csv", 8),
        ("ds=2013-01-02/b.csv", 8),
    ]
    assert lake.listdir("raw/missing") == []
    assert lake.uri("raw", "t").endswith("/lake/raw/t")


def test_move_never_replaces(lake: Lake):
    lake.write_bytes("a/f", b"1")
    lake.makedirs("b")  # an empty dir: local rename(2) would silently replace it
    with pytest.raises(LakeError, match="target exists"):
        lake.move("a", "b")
    assert lake.read_bytes("a/f") == b"1"
    lake.move("a", "c/d")
    assert lake.read_bytes("c/d/f") == b"1" and not lake.exists("a")


def test_delete_is_recursive_and_tolerant(lake: Lake):
    lake.write_bytes("x/y/z", b"1")
    lake.delete("x")
    assert not lake.exists("x")
    lake.delete("x")  # nothing there: fine


def test_listing_a_directory_created_while_it_is_listed(tmp_path):
    """pyarrow raises when a directory appears between its failed listing and its existence check
    (another publisher creating a table's _trash): the lake lists again instead of failing."""
    lake = Lake(f"file://{tmp_path}/lake")
    lake.makedirs("t/_trash/ds=2013-01-01.abc")
    real, calls = lake.fs, []

    def get_file_info(selector):
        calls.append(selector)
        if len(calls) == 1:
            raise FileNotFoundError("Cannot list directory: [errno 2] No such file or directory")
        return real.get_file_info(selector)

    lake.fs = type("RacyFs", (), {"get_file_info": staticmethod(get_file_info)})()
    assert lake.listdir("t/_trash") == ["ds=2013-01-01.abc"] and len(calls) == 2


@pytest.mark.hdfs
def test_a_write_on_hdfs_returns_once_readers_get_the_whole_file(hdfs):
    lake = Lake(f"{hdfs.uri}/visible/lake")
    lake.fs = ShortReads(lake.fs, "open_input_file", short=2)
    lake.write_bytes("raw/t/a.csv", b"x,y\n1,2\n")
    assert lake.fs.short == 0  # it looked until a reader was given the 8 bytes
    assert lake.read_bytes("raw/t/a.csv") == b"x,y\n1,2\n"
    lake.fs.short = 10**6  # never readable: a clear error instead of a file readers see short
    with pytest.raises(OSError, match="wrote 8 bytes, a reader still gets 0"):
        lake._wait_until_visible("raw/t/a.csv", 8, timeout=0.05)
