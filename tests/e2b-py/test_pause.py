"""Pause and resume through the sync and async SDKs: the cgroup freezer keeps the
sandbox's memory and processes; connect resumes it."""

import asyncio
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest
from e2b import AsyncSandbox, Sandbox, SandboxQuery, SandboxState
from e2b.exceptions import FileNotFoundException, SandboxException

from conftest import eventually

COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done"


def frozen(sandbox_id):
    """Whether Docker reports the sandbox's container paused (its name is the id)."""
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Paused}}", sandbox_id],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() == "true"


def counter(sb):
    """The background counter's value; 0 while it has not written its file yet (or
    rewrites it at that moment)."""
    try:
        return int(sb.files.read("/tmp/counter").strip() or "0")
    except FileNotFoundException:
        return 0


def test_pause_freezes_and_connect_resumes_where_it_was(made):
    sb = Sandbox.create("base", timeout=120, metadata={"suite": "e2b-py-pause"})
    made.append(sb)
    bg = sb.commands.run(COUNTER, background=True, timeout=0)
    eventually("the counter counts", 15, lambda: counter(sb) >= 3)
    sb.files.write("/tmp/before-pause.txt", "kept")

    t0 = time.monotonic()
    assert sb.pause() is True
    paused_in = time.monotonic() - t0
    assert frozen(sb.sandbox_id)
    assert sb.is_running() is False
    info = sb.get_info()
    assert info.state == SandboxState.PAUSED
    listed = Sandbox.list(
        query=SandboxQuery(metadata={"suite": "e2b-py-pause"}, state=[SandboxState.PAUSED])
    ).next_items()
    assert [s.sandbox_id for s in listed] == [sb.sandbox_id]
    assert listed[0].state == SandboxState.PAUSED
    running = Sandbox.list(
        query=SandboxQuery(metadata={"suite": "e2b-py-pause"}, state=[SandboxState.RUNNING])
    ).next_items()
    assert running == []
    with pytest.raises(SandboxException):
        sb.commands.run("true")
    with pytest.raises(SandboxException):
        sb.files.read("/tmp/before-pause.txt")
    # Already paused: the SDK reads the 409 as False.
    assert Sandbox.pause(sb.sandbox_id) is False
    # Its timeout is given when it is resumed.
    with pytest.raises(SandboxException, match="paused"):
        sb.set_timeout(60)

    t0 = time.monotonic()
    resumed = Sandbox.connect(sb.sandbox_id, timeout=60)
    resumed_in = time.monotonic() - t0
    print(f"# pause {paused_in * 1e3:.1f} ms, connect (resume) {resumed_in * 1e3:.1f} ms")
    assert not frozen(sb.sandbox_id)
    assert resumed.is_running() is True
    info = resumed.get_info()
    assert info.state == SandboxState.RUNNING
    now = datetime.now(timezone.utc)
    assert now + timedelta(seconds=40) < info.end_at < now + timedelta(seconds=70), info.end_at
    assert resumed.files.read("/tmp/before-pause.txt") == "kept"
    # The same process, still counting.
    assert any(p.pid == bg.pid for p in resumed.commands.list())
    seen = counter(resumed)
    eventually("the counter counts on", 15, lambda: counter(resumed) > seen + 2)
    # Connecting to a running sandbox is a plain connect.
    assert Sandbox.connect(sb.sandbox_id).is_running()
    assert bg.kill() is True

    # A paused sandbox can be killed.
    assert Sandbox.pause(sb.sandbox_id) is True
    assert Sandbox.kill(sb.sandbox_id) is True
    assert sb.is_running() is False
    assert Sandbox.kill(sb.sandbox_id) is False


def test_a_paused_sandbox_does_not_expire(made):
    sb = Sandbox.create("base", timeout=3)
    made.append(sb)
    sb.beta_pause()
    deadline = sb.get_info().end_at
    while datetime.now(timezone.utc) < deadline + timedelta(seconds=3):
        time.sleep(0.2)
    assert Sandbox.get_info(sb.sandbox_id).state == SandboxState.PAUSED
    Sandbox.connect(sb.sandbox_id, timeout=60)
    assert sb.commands.run("echo back").stdout == "back\n"


def test_filesystem_only_pause_is_refused(made):
    sb = Sandbox.create("base", timeout=60)
    made.append(sb)
    with pytest.raises(SandboxException, match="not supported"):
        sb.pause(keep_memory=False)
    assert sb.is_running()


def test_async_pause_and_resume():
    async def body():
        sb = await AsyncSandbox.create("base", timeout=120)
        try:
            await sb.commands.run("echo 1 > /tmp/n")
            assert await sb.pause() is True
            assert await sb.is_running() is False
            assert (await sb.get_info()).state == SandboxState.PAUSED
            assert await AsyncSandbox.pause(sb.sandbox_id) is False
            back = await AsyncSandbox.connect(sb.sandbox_id, timeout=60)
            assert await back.is_running() is True
            assert (await back.commands.run("cat /tmp/n")).stdout == "1\n"
            # The instance connect resumes too.
            await back.pause()
            await back.connect(timeout=30)
            assert (await back.commands.run("echo ok")).stdout == "ok\n"
        finally:
            await AsyncSandbox.kill(sb.sandbox_id)

    asyncio.run(asyncio.wait_for(body(), 170))


def test_on_timeout_pause_pauses_at_the_deadline(made):
    sb = Sandbox.create("base", timeout=3, lifecycle={"on_timeout": "pause"})
    made.append(sb)
    sb.files.write("/tmp/kept.txt", "still here")
    eventually(
        "the sandbox is paused at its deadline",
        30,
        lambda: Sandbox.get_info(sb.sandbox_id).state == SandboxState.PAUSED,
        0.3,
    )
    assert frozen(sb.sandbox_id)
    assert sb.is_running() is False
    back = Sandbox.connect(sb.sandbox_id, timeout=60)
    assert back.files.read("/tmp/kept.txt") == "still here"
    with pytest.raises(SandboxException, match="autoResume"):
        made.append(
            Sandbox.create(
                "base", timeout=60, lifecycle={"on_timeout": "pause", "auto_resume": True}
            )
        )
