"""Shared helpers of the Python SDK suite.

Run by tests/tests/e2b_py.rs, which starts a daemon with --e2b-listen and sets
E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY (of the e2b_<hex> form the SDK checks).
"""

import os
import time

import pytest
from e2b import Sandbox


def eventually(what, within_s, check, every_s=0.1):
    """Polls `check` until it is true, failing after `within_s` seconds."""
    until = time.monotonic() + within_s
    while True:
        if check():
            return
        if time.monotonic() > until:
            pytest.fail(f"{what}: not within {within_s} s")
        time.sleep(every_s)


async def eventually_async(what, within_s, check, every_s=0.1):
    """`eventually` for an async check."""
    import asyncio

    until = time.monotonic() + within_s
    while True:
        if await check():
            return
        if time.monotonic() > until:
            pytest.fail(f"{what}: not within {within_s} s")
        await asyncio.sleep(every_s)


def api_host():
    """host:port of the daemon's E2B address."""
    return os.environ["E2B_API_URL"].split("://", 1)[1].rstrip("/")


@pytest.fixture(scope="module")
def sbx():
    """One sandbox for a module's tests, killed at its end."""
    sandbox = Sandbox.create("base", timeout=300)
    yield sandbox
    sandbox.kill()


@pytest.fixture
def made():
    """Sandboxes a test creates; killed whatever the outcome."""
    sandboxes = []
    yield sandboxes
    for sandbox in sandboxes:
        try:
            Sandbox.kill(sandbox.sandbox_id)
        except Exception:
            pass
