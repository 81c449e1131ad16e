"""Commands through the sync `Sandbox` (process.Process over Connect with the JSON
codec, streams over HTTP/1.1)."""

import http.client
import time

import pytest
from e2b import CommandExitException, Sandbox
from e2b.exceptions import SandboxException, TimeoutException

from conftest import api_host, eventually


def running(sbx, pid):
    return any(p.pid == pid for p in sbx.commands.list())


def test_foreground_output_cwd_envs_user(sbx):
    out = sbx.commands.run("echo out; echo err >&2; pwd; whoami")
    assert out.exit_code == 0
    assert out.stdout == "out\n/home/user\nuser\n"
    assert out.stderr == "err\n"
    assert out.error is None

    sbx.commands.run("mkdir -p work/dir")
    assert sbx.commands.run("pwd", cwd="work/dir").stdout == "/home/user/work/dir\n"
    assert sbx.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
    envs = sbx.commands.run('echo "$A-$B"', envs={"A": "one", "B": "two words"})
    assert envs.stdout == "one-two words\n"
    root = sbx.commands.run("whoami; id -u; echo $HOME", user="root")
    assert root.stdout == "root\n0\n/root\n"


def test_non_zero_exit_and_broken_utf8(sbx):
    with pytest.raises(CommandExitException) as e:
        sbx.commands.run("echo partial; echo bad >&2; exit 3")
    assert e.value.exit_code == 3
    assert e.value.stdout == "partial\n"
    assert e.value.stderr == "bad\n"
    broken = sbx.commands.run("printf 'a\\xff\\xfeb\\n'")
    assert broken.stdout == "a\ufffd\ufffdb\n"


def test_on_stdout_and_on_stderr_stream(sbx):
    chunks = []
    started = time.monotonic()
    out = sbx.commands.run(
        "echo one; sleep 0.5; echo two >&2; sleep 0.5; echo three",
        on_stdout=lambda d: chunks.append(("out", d, time.monotonic())),
        on_stderr=lambda d: chunks.append(("err", d, time.monotonic())),
    )
    assert [(k, d) for k, d, _ in chunks] == [
        ("out", "one\n"),
        ("err", "two\n"),
        ("out", "three\n"),
    ]
    # Streamed as written, not delivered at the end.
    assert chunks[0][2] < chunks[2][2] - 0.4
    assert out.stdout == "one\nthree\n"
    print(f"# first byte of a streamed command (sync): {(chunks[0][2] - started) * 1e3:.1f} ms")


def test_timeout_kills_the_command(sbx):
    t0 = time.monotonic()
    with pytest.raises(TimeoutException):
        sbx.commands.run("echo $$ > /tmp/timeout.pid; exec sleep 60", timeout=1.5)
    assert time.monotonic() - t0 < 30
    pid = sbx.commands.run("cat /tmp/timeout.pid").stdout.strip()
    eventually(
        "the timed-out process is gone",
        15,
        lambda: sbx.commands.run(f"kill -0 {pid} 2>/dev/null && echo alive || echo gone").stdout
        == "gone\n",
    )


def test_background_list_kill_stdin_connect(sbx):
    bg = sbx.commands.run("sleep 120", background=True)
    assert running(sbx, bg.pid)
    listed = next(p for p in sbx.commands.list() if p.pid == bg.pid)
    assert listed.cmd == "/bin/bash"
    assert listed.args == ["-l", "-c", "sleep 120"]
    assert sbx.commands.kill(bg.pid) is True
    with pytest.raises(CommandExitException):
        bg.wait()
    eventually("the killed process leaves the list", 5, lambda: not running(sbx, bg.pid))
    assert sbx.commands.kill(bg.pid) is False

    cat = sbx.commands.run("cat", background=True, stdin=True)
    sbx.commands.send_stdin(cat.pid, "hello ")
    cat.send_stdin(b"stdin\n")
    sbx.commands.close_stdin(cat.pid)
    seen = []
    done = cat.wait(on_stdout=seen.append)
    assert done.stdout == "hello stdin\n"
    assert "".join(seen) == "hello stdin\n"

    wc = sbx.commands.run("wc -c", background=True, stdin=True)
    wc.send_stdin("x" * 200_000 + "\n")
    wc.close_stdin()
    assert wc.wait().stdout.strip() == "200001"

    slow = sbx.commands.run("for i in 1 2 3; do echo $i; sleep 0.4; done", background=True)
    slow.disconnect()
    again = sbx.commands.connect(slow.pid)
    assert again.wait().exit_code == 0
    late = sbx.commands.connect(slow.pid)
    assert late.wait().exit_code == 0

    env_bg = sbx.commands.run(
        'cd; echo "$X in $PWD as $(whoami)"', background=True, envs={"X": "bg"}, user="root"
    )
    assert env_bg.wait().stdout == "bg in /root as root\n"


def test_ten_background_processes(sbx):
    handles = [
        sbx.commands.run(f"sleep 0.5; echo proc-{i}", background=True) for i in range(10)
    ]
    assert len({h.pid for h in handles}) == 10
    assert [h.wait().stdout for h in handles] == [f"proc-{i}\n" for i in range(10)]


def test_get_host_reaches_a_server_in_the_sandbox(sbx):
    server = sbx.commands.run(
        "python3 -m http.server 8001 --bind 0.0.0.0", background=True, timeout=0, cwd="/tmp"
    )
    sbx.files.write("/tmp/served.txt", "served by python\n")
    host = sbx.get_host(8001)
    origin = api_host()
    assert host == f"8001-{sbx.sandbox_id}.{origin.replace('127.0.0.1', 'localhost')}"

    def fetch(path):
        # *.localhost needs libnss-myhostname to resolve: connect to the daemon and
        # send the Host by hand.
        name, port = origin.rsplit(":", 1)
        conn = http.client.HTTPConnection(name, int(port), timeout=10)
        conn.request("GET", path, headers={"Host": host})
        res = conn.getresponse()
        return res.status, res.read().decode()

    eventually("the server answers", 20, lambda: fetch("/served.txt")[0] == 200, 0.2)
    assert fetch("/served.txt") == (200, "served by python\n")
    server.kill()
    # The kill is answered once the signal is sent: the server may take a moment to go.
    eventually("the killed server stops answering", 10, lambda: fetch("/served.txt")[0] != 200)
    status, body = fetch("/served.txt")
    assert status == 502, body


def test_a_killed_sandbox_ends_its_streams():
    other = Sandbox.create("base", timeout=60)
    h = other.commands.run("sleep 300", background=True)
    other.kill()
    with pytest.raises((SandboxException, CommandExitException)):
        h.wait()
    assert other.is_running() is False


def test_sudo_fails_unless_the_daemon_allows_it(sbx):
    # The default: the sandbox runs with no-new-privileges (see test_sudo.py).
    with pytest.raises(CommandExitException):
        sbx.commands.run("sudo -n true")
