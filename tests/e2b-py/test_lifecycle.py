"""The sandbox lifecycle through the sync `Sandbox`: create, info, list, connect,
set_timeout, kill, and the errors of a dead sandbox."""

from datetime import datetime, timedelta, timezone
import time

import pytest
from e2b import Sandbox, SandboxQuery, SandboxState
from e2b.exceptions import NotFoundException, SandboxException

from conftest import eventually


def test_create_info_envs_and_list(made):
    a = Sandbox.create(
        "base",
        timeout=120,
        metadata={"suite": "e2b-py", "which": "a b&c=d"},
        envs={"FROM_CREATE": "hello there"},
    )
    made.append(a)
    assert a.sandbox_id.startswith("sbx-")
    info = a.get_info()
    assert info.sandbox_id == a.sandbox_id
    assert info.template_id == "base"
    assert info.state == SandboxState.RUNNING
    assert info.metadata == {"suite": "e2b-py", "which": "a b&c=d"}
    now = datetime.now(timezone.utc)
    assert info.started_at <= now
    assert info.end_at > now + timedelta(seconds=100), info.end_at
    assert info.end_at < now + timedelta(seconds=130), info.end_at
    assert isinstance(info.cpu_count, int) and isinstance(info.memory_mb, int)
    assert a.is_running()
    assert a.commands.run('echo "$FROM_CREATE"').stdout == "hello there\n"

    b = Sandbox.create("base", timeout=120, metadata={"suite": "e2b-py"})
    made.append(b)

    mine = Sandbox.list(query=SandboxQuery(metadata={"which": "a b&c=d"})).next_items()
    assert [s.sandbox_id for s in mine] == [a.sandbox_id]
    assert mine[0].state == SandboxState.RUNNING
    assert mine[0].metadata["which"] == "a b&c=d"
    assert Sandbox.list(query=SandboxQuery(metadata={"which": "nope"})).next_items() == []
    running = Sandbox.list(
        query=SandboxQuery(metadata={"suite": "e2b-py"}, state=[SandboxState.RUNNING])
    ).next_items()
    assert {s.sandbox_id for s in running} == {a.sandbox_id, b.sandbox_id}
    paused = Sandbox.list(
        query=SandboxQuery(metadata={"suite": "e2b-py"}, state=[SandboxState.PAUSED])
    ).next_items()
    assert paused == []

    # Pages of one, newest first by default, then oldest first.
    for order, expected in (("desc", [b, a]), ("asc", [a, b])):
        pages = Sandbox.list(
            query=SandboxQuery(metadata={"suite": "e2b-py"}), limit=1, order=order
        )
        seen = []
        while pages.has_next:
            items = pages.next_items()
            assert len(items) <= 1
            seen += [s.sandbox_id for s in items]
        assert seen == [s.sandbox_id for s in expected], order

    # Started after a's start: b only (a listed item carries its start).
    later = Sandbox.list(
        query=SandboxQuery(metadata={"suite": "e2b-py"}, started_after=info.started_at)
    ).next_items()
    assert a.sandbox_id not in [s.sandbox_id for s in later]
    by_template = Sandbox.list(
        query=SandboxQuery(metadata={"suite": "e2b-py"}, template="no-such")
    ).next_items()
    assert by_template == []

    again = Sandbox.connect(a.sandbox_id)
    assert again.commands.run("echo again").stdout == "again\n"
    assert Sandbox.get_info(a.sandbox_id).sandbox_id == a.sandbox_id

    assert Sandbox.kill(b.sandbox_id) is True
    assert Sandbox.kill(b.sandbox_id) is False
    assert b.is_running() is False
    with pytest.raises(NotFoundException):
        Sandbox.get_info(b.sandbox_id)
    with pytest.raises(NotFoundException):
        Sandbox.connect(b.sandbox_id)
    with pytest.raises(SandboxException):
        b.commands.run("true")
    left = Sandbox.list(query=SandboxQuery(metadata={"suite": "e2b-py"})).next_items()
    assert [s.sandbox_id for s in left] == [a.sandbox_id]


def test_an_agent_slug_is_a_template(made):
    sb = Sandbox.create("tiny", timeout=60, envs={"FROM_CALL": "call"})
    made.append(sb)
    out = sb.commands.run('echo "$FROM_AGENT $FROM_CALL"; cat ~/agent-file.txt')
    assert out.stdout == "agent call\nfrom the agent\n"
    assert sb.get_info().template_id == "tiny"
    with pytest.raises(Exception, match="not found"):
        Sandbox.create("no-such-template")


def test_set_timeout_is_an_absolute_deadline(made):
    sb = Sandbox.create("base", timeout=120)
    made.append(sb)
    # Connecting with a shorter timeout keeps the later deadline.
    Sandbox.connect(sb.sandbox_id, timeout=5)
    end = sb.get_info().end_at
    assert end > datetime.now(timezone.utc) + timedelta(seconds=60), end
    sb.set_timeout(3)
    set_at = time.monotonic()
    end = sb.get_info().end_at
    assert end < datetime.now(timezone.utc) + timedelta(seconds=10), end
    eventually("the sandbox expires", 30, lambda: not sb.is_running())
    print(f"# expired {time.monotonic() - set_at:.1f} s after set_timeout(3)")
    with pytest.raises(NotFoundException):
        Sandbox.get_info(sb.sandbox_id)
    assert Sandbox.kill(sb.sandbox_id) is False


def test_snapshots_and_fork_say_they_are_not_supported(made):
    sb = Sandbox.create("base", timeout=60)
    made.append(sb)
    with pytest.raises(SandboxException, match="not supported"):
        sb.create_snapshot()
    with pytest.raises(SandboxException, match="not supported"):
        sb.fork()


def test_network_options_are_taken_or_refused_clearly(made):
    # As the SDK serializes them (their mapping onto the firewall is proven with
    # real peers in tests/tests/e2b_network.rs).
    from e2b import ALL_TRAFFIC

    offline = Sandbox.create("base", timeout=60, allow_internet_access=False)
    made.append(offline)
    assert offline.commands.run("echo offline").stdout == "offline\n"
    only = Sandbox.create(
        "base", timeout=60, network={"deny_out": [ALL_TRAFFIC], "allow_out": ["10.9.8.7"]}
    )
    made.append(only)
    assert only.is_running()
    # Private traffic: getHost ports answer only with the sandbox's token.
    private = Sandbox.create("base", timeout=60, network={"allow_public_traffic": False})
    made.append(private)
    assert private.traffic_access_token
    with pytest.raises(SandboxException, match="denyOut"):
        made.append(
            Sandbox.create(
                "base", timeout=60, network={"deny_out": ["10.0.0.0/8"], "allow_out": ["10.1.2.3"]}
            )
        )
