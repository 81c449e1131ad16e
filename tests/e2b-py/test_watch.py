"""Directory watches: the sync SDK's polling watcher (CreateWatcher, GetWatcherEvents,
RemoveWatcher) and the async SDK's streamed WatchDir, with entries and metadata."""

import asyncio

from e2b import AsyncSandbox, FilesystemEventType

from conftest import eventually, eventually_async


def test_the_sync_watcher_polls_recursive_events_with_entries(sbx):
    sbx.files.make_dir("watched/sub")
    handle = sbx.files.watch_dir("watched", recursive=True, include_entry=True)
    seen = []

    sbx.files.write("watched/sub/a.txt", "x", metadata={"k": "v"})

    def wrote_a():
        seen.extend(handle.get_new_events())
        return any(
            e.name == "sub/a.txt" and e.type == FilesystemEventType.WRITE for e in seen
        )

    eventually("a WRITE event for sub/a.txt", 20, wrote_a, every_s=0.2)
    write = next(
        e for e in seen if e.name == "sub/a.txt" and e.type == FilesystemEventType.WRITE
    )
    assert write.entry is not None
    assert write.entry.path == "/home/user/watched/sub/a.txt"
    assert write.entry.metadata == {"k": "v"}

    sbx.files.remove("watched/sub/a.txt")

    def removed_a():
        seen.extend(handle.get_new_events())
        return any(
            e.name == "sub/a.txt" and e.type == FilesystemEventType.REMOVE for e in seen
        )

    eventually("a REMOVE event for sub/a.txt", 20, removed_a, every_s=0.2)
    handle.stop()


def test_the_async_watch_streams_events():
    async def body():
        sandbox = await AsyncSandbox.create("base", timeout=120)
        try:
            await sandbox.files.make_dir("streamed")
            events = []
            handle = await sandbox.files.watch_dir(
                "streamed", on_event=events.append, include_entry=True
            )
            await sandbox.files.write("streamed/b.txt", "hello")

            async def wrote_b():
                return any(
                    e.name == "b.txt" and e.type == FilesystemEventType.WRITE
                    for e in events
                )

            await eventually_async("a streamed WRITE event for b.txt", 20, wrote_b)
            entry = next(e.entry for e in events if e.name == "b.txt" and e.entry)
            assert entry.size == 5
            await handle.stop()
        finally:
            await sandbox.kill()

    asyncio.run(asyncio.wait_for(body(), 170))
