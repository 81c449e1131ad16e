"""Files through the sync `Sandbox`: `/files` upload and download (multipart and
octet-stream), filesystem.Filesystem over Connect, signed URLs."""

import io
import json
import urllib.error
import urllib.request

import pytest
from e2b import FileType
from e2b.exceptions import FileNotFoundException, SandboxException


def test_write_and_read_text_bytes_streams(sbx):
    info = sbx.files.write("notes/hello.txt", "hello, files\n")
    assert info.path == "/home/user/notes/hello.txt"
    assert info.name == "hello.txt"
    assert info.type == FileType.FILE
    assert sbx.files.read("notes/hello.txt") == "hello, files\n"
    assert sbx.files.read("/home/user/notes/hello.txt") == "hello, files\n"

    data = bytes(range(256))
    sbx.files.write("bin/all-bytes", data)
    back = sbx.files.read("bin/all-bytes", format="bytes")
    assert bytes(back) == data

    sbx.files.write("octet.txt", "through octet-stream", use_octet_stream=True)
    assert sbx.files.read("octet.txt") == "through octet-stream"

    # A file-like object is streamed (octet-stream by default).
    sbx.files.write("from-io.bin", io.BytesIO(b"x" * 100_000 + b"end"))
    assert sbx.commands.run("wc -c < from-io.bin").stdout.strip() == "100003"

    big = "compressible line\n" * 10_000
    sbx.files.write("gz/big.txt", big, gzip=True)
    assert sbx.files.read("gz/big.txt") == big

    with sbx.files.read("gz/big.txt", format="stream") as stream:
        streamed = b"".join(stream)
    assert streamed.decode() == big

    sbx.files.write("empty.txt", "")
    assert sbx.files.read("empty.txt") == ""

    with pytest.raises(FileNotFoundException):
        sbx.files.read("no/such/file")


def test_write_files_is_one_multipart_upload(sbx):
    written = sbx.files.write_files(
        [
            {"path": "batch/a.txt", "data": "A"},
            {"path": "batch/deep/b.txt", "data": b"B"},
            {"path": "/tmp/c.txt", "data": "C"},
        ]
    )
    assert sorted(w.path for w in written) == [
        "/home/user/batch/a.txt",
        "/home/user/batch/deep/b.txt",
        "/tmp/c.txt",
    ]
    assert sbx.commands.run("cat batch/a.txt batch/deep/b.txt /tmp/c.txt").stdout == "ABC"


def test_list_exists_info_make_dir_rename_remove(sbx):
    sbx.files.write("tree/one.txt", "1")
    sbx.files.write("tree/sub/two.txt", "22")
    shallow = sbx.files.list("tree")
    assert sorted((e.name, e.type) for e in shallow) == [
        ("one.txt", FileType.FILE),
        ("sub", FileType.DIR),
    ]
    deep = sbx.files.list("tree", depth=2)
    assert sorted(e.path for e in deep) == [
        "/home/user/tree/one.txt",
        "/home/user/tree/sub",
        "/home/user/tree/sub/two.txt",
    ]

    assert sbx.files.exists("tree/one.txt") is True
    assert sbx.files.exists("tree/nope.txt") is False

    info = sbx.files.get_info("tree/sub/two.txt")
    assert info.name == "two.txt"
    assert info.type == FileType.FILE
    assert info.size == 2
    assert (info.owner, info.group) == ("user", "user")
    assert info.permissions == "-rw-r--r--"
    assert info.mode == 0o644
    sbx.commands.run("ln -s tree/one.txt link")
    link = sbx.files.get_info("link")
    assert link.type == FileType.FILE
    assert link.symlink_target == "/home/user/tree/one.txt"

    assert sbx.files.make_dir("made/here") is True
    assert sbx.files.make_dir("made/here") is False
    assert sbx.files.get_info("made/here").type == FileType.DIR

    moved = sbx.files.rename("tree/one.txt", "tree/uno.txt")
    assert moved.path == "/home/user/tree/uno.txt"
    assert sbx.files.exists("tree/one.txt") is False
    assert sbx.files.read("tree/uno.txt") == "1"

    sbx.files.remove("tree")
    assert sbx.files.exists("tree") is False
    sbx.files.remove("tree")  # as envd (rm -rf): what is not there is no error
    with pytest.raises(FileNotFoundException):
        sbx.files.get_info("tree")


def test_files_act_as_the_user_asked_for(sbx):
    sbx.files.write("/root/secret.txt", "root only", user="root")
    assert sbx.files.read("/root/secret.txt", user="root") == "root only"
    assert sbx.files.get_info("/root/secret.txt", user="root").owner == "root"
    with pytest.raises(SandboxException):
        sbx.files.read("/root/secret.txt")
    with pytest.raises(SandboxException):
        sbx.files.write("/etc/not-yours", "x")


def fetch(url, data=None, headers=None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_signed_urls(sbx):
    sbx.files.write("signed.txt", "signed content")
    url = sbx.download_url("signed.txt")
    assert "signature=v1_" in url
    assert fetch(url) == (200, b"signed content")
    assert fetch(sbx.download_url("signed.txt", use_signature_expiration=60))[0] == 200

    status, body = fetch(sbx.download_url("signed.txt", use_signature_expiration=-10))
    assert status == 401
    assert json.loads(body) == {"code": 401, "message": "signature is already expired"}

    up = sbx.upload_url("uploaded/by-url.txt")
    boundary = "sandboxd-boundary"
    form = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
        f"filename=\"by-url.txt\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        f"from a signed url\r\n--{boundary}--\r\n"
    ).encode()
    status, body = fetch(
        up, form, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert status == 200, body
    assert sbx.files.read("uploaded/by-url.txt") == "from a signed url"
