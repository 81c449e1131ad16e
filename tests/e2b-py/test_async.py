"""The same surface through `AsyncSandbox` (asyncio; each test runs its own loop)."""

import asyncio
import http.client
import json
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from e2b import AsyncSandbox, CommandExitException, FileType, SandboxQuery, SandboxState
from e2b.exceptions import (
    FileNotFoundException,
    NotFoundException,
    SandboxException,
    TimeoutException,
)

from conftest import api_host, eventually_async


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 170))


def test_async_lifecycle():
    async def body():
        a = await AsyncSandbox.create(
            "base", timeout=120, metadata={"suite": "e2b-py-async"}, envs={"E": "from create"}
        )
        b = await AsyncSandbox.create("base", timeout=120, metadata={"suite": "e2b-py-async"})
        try:
            info = await a.get_info()
            assert info.state == SandboxState.RUNNING
            assert info.metadata == {"suite": "e2b-py-async"}
            assert info.end_at > datetime.now(timezone.utc) + timedelta(seconds=100)
            assert await a.is_running()
            assert (await a.commands.run('echo "$E"')).stdout == "from create\n"

            pages = AsyncSandbox.list(
                query=SandboxQuery(metadata={"suite": "e2b-py-async"}), limit=1
            )
            seen = []
            while pages.has_next:
                seen += [s.sandbox_id for s in await pages.next_items()]
            assert sorted(seen) == sorted([a.sandbox_id, b.sandbox_id])

            again = await AsyncSandbox.connect(a.sandbox_id)
            assert (await again.commands.run("echo again")).stdout == "again\n"
            assert (await AsyncSandbox.get_info(a.sandbox_id)).sandbox_id == a.sandbox_id

            assert await AsyncSandbox.kill(b.sandbox_id) is True
            assert await AsyncSandbox.kill(b.sandbox_id) is False
            assert await b.is_running() is False
            with pytest.raises(NotFoundException):
                await AsyncSandbox.get_info(b.sandbox_id)

            await a.set_timeout(3)
            t0 = time.monotonic()

            async def gone():
                return not await a.is_running()

            await eventually_async("the sandbox expires", 30, gone)
            print(f"# async: expired {time.monotonic() - t0:.1f} s after set_timeout(3)")
            assert await AsyncSandbox.kill(a.sandbox_id) is False
        finally:
            for s in (a, b):
                await AsyncSandbox.kill(s.sandbox_id)

    run(body())


def test_async_commands():
    async def body():
        sb = await AsyncSandbox.create("base", timeout=120)
        try:
            out = await sb.commands.run("echo out; echo err >&2; pwd; whoami")
            assert (out.stdout, out.stderr) == ("out\n/home/user\nuser\n", "err\n")
            assert (await sb.commands.run("pwd", cwd="/tmp")).stdout == "/tmp\n"
            envs = await sb.commands.run('echo "$A"', envs={"A": "one two"})
            assert envs.stdout == "one two\n"
            assert (await sb.commands.run("id -u", user="root")).stdout == "0\n"

            with pytest.raises(CommandExitException) as e:
                await sb.commands.run("echo partial; exit 4")
            assert (e.value.exit_code, e.value.stdout) == (4, "partial\n")

            chunks = []

            async def on_err(d):
                chunks.append(("err", d))

            await sb.commands.run(
                "echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three",
                on_stdout=lambda d: chunks.append(("out", d)),
                on_stderr=on_err,
            )
            assert chunks == [("out", "one\n"), ("err", "two\n"), ("out", "three\n")]

            with pytest.raises(TimeoutException):
                await sb.commands.run("sleep 60", timeout=1.5)

            seen = []
            bg = await sb.commands.run(
                "for i in 1 2 3; do echo tick-$i; sleep 0.2; done; sleep 120",
                background=True,
                on_stdout=lambda d: seen.append(d),
            )

            async def ticked():
                return "".join(seen).count("tick-") == 3

            await eventually_async("background output streams", 15, ticked)
            assert any(p.pid == bg.pid for p in await sb.commands.list())
            assert await bg.kill() is True
            with pytest.raises(CommandExitException):
                await bg.wait()
            assert await sb.commands.kill(bg.pid) is False

            cat = await sb.commands.run("cat", background=True, stdin=True)
            await sb.commands.send_stdin(cat.pid, "to stdin\n")
            await sb.commands.close_stdin(cat.pid)
            assert (await cat.wait()).stdout == "to stdin\n"

            slow = await sb.commands.run("sleep 0.5; echo late", background=True)
            await slow.disconnect()
            again = await sb.commands.connect(slow.pid)
            assert (await again.wait()).stdout == "late\n"

            handles = await asyncio.gather(
                *[sb.commands.run(f"sleep 0.3; echo p{i}", background=True) for i in range(10)]
            )
            results = await asyncio.gather(*[h.wait() for h in handles])
            assert [r.stdout for r in results] == [f"p{i}\n" for i in range(10)]
        finally:
            await sb.kill()

    run(body())


def fetch(url, data=None, headers=None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_async_files_urls_and_host():
    async def body():
        sb = await AsyncSandbox.create("base", timeout=120)
        try:
            w = await sb.files.write("a/b.txt", "text")
            assert w.path == "/home/user/a/b.txt"
            assert await sb.files.read("a/b.txt") == "text"
            await sb.files.write("raw.bin", bytes(range(256)))
            assert bytes(await sb.files.read("raw.bin", format="bytes")) == bytes(range(256))
            many = await sb.files.write_files(
                [{"path": "m/1.txt", "data": "1"}, {"path": "m/2.txt", "data": b"2"}]
            )
            assert sorted(e.path for e in many) == ["/home/user/m/1.txt", "/home/user/m/2.txt"]
            listed = await sb.files.list("m")
            assert sorted(e.name for e in listed) == ["1.txt", "2.txt"]
            assert await sb.files.exists("m/1.txt") is True
            assert await sb.files.exists("m/3.txt") is False
            info = await sb.files.get_info("m/2.txt")
            assert (info.type, info.size, info.owner) == (FileType.FILE, 1, "user")
            assert await sb.files.make_dir("d/e") is True
            assert await sb.files.make_dir("d/e") is False
            moved = await sb.files.rename("m/1.txt", "d/e/1.txt")
            assert moved.path == "/home/user/d/e/1.txt"
            await sb.files.remove("m")
            assert await sb.files.exists("m") is False
            with pytest.raises(FileNotFoundException):
                await sb.files.read("m/2.txt")
            with pytest.raises(SandboxException):
                await sb.files.read("/root/.bashrc")

            url = sb.download_url("d/e/1.txt")
            status, content = await asyncio.to_thread(fetch, url)
            assert (status, content) == (200, b"1")
            expired = sb.download_url("d/e/1.txt", use_signature_expiration=-10)
            status, content = await asyncio.to_thread(fetch, expired)
            assert status == 401
            assert json.loads(content)["message"] == "signature is already expired"

            await sb.commands.run(
                "python3 -m http.server 8002 --bind 0.0.0.0", background=True, timeout=0, cwd="/home/user/d/e"
            )
            host = sb.get_host(8002)
            name, port = api_host().rsplit(":", 1)

            def get(path):
                conn = http.client.HTTPConnection(name, int(port), timeout=10)
                conn.request("GET", path, headers={"Host": host})
                res = conn.getresponse()
                return res.status, res.read()

            async def answers():
                return (await asyncio.to_thread(get, "/1.txt"))[0] == 200

            await eventually_async("the server answers", 20, answers, 0.2)
            assert await asyncio.to_thread(get, "/1.txt") == (200, b"1")
        finally:
            await sb.kill()

    run(body())
