"""`sudo` in the `base` template, run by tests/tests/e2b_py.rs against a daemon
started with --e2b-base-sudo (without it, test_commands.py shows sudo failing)."""

from e2b import Sandbox


def test_base_has_passwordless_sudo_for_user(made):
    sb = Sandbox.create("base", timeout=60)
    made.append(sb)
    assert sb.commands.run("whoami").stdout == "user\n"
    out = sb.commands.run("sudo -n id -u 2>/dev/null; sudo -n -u user whoami 2>/dev/null")
    assert out.stdout == "0\nuser\n"
