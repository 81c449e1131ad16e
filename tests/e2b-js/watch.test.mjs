// The unmodified e2b SDK against sandboxd's E2B API: watchDir (filesystem.Filesystem's
// WatchDir stream over inotify in the sandbox), recursive or not, with entries, and
// watches that end with their client.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, FilesystemEventType, FileType } from 'e2b'

let sb
before(async () => {
  sb = await Sandbox.create('base', { timeoutMs: 300_000 })
})
after(async () => {
  if (sb) await sb.kill().catch(() => {})
})

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Waits (up to 20 s) until `done(events)` holds. */
async function until(events, done, what) {
  const end = Date.now() + 20_000
  while (!done(events)) {
    if (Date.now() > end) assert.fail(`${what}: got ${JSON.stringify(events)}`)
    await sleep(25)
  }
}

const has = (events, name, type) => events.some((e) => e.name === name && e.type === type)

test('watchDir reports each event type in the directory, not below it', { timeout: 60_000 }, async () => {
  await sb.files.makeDir('w1/sub')
  const events = []
  const handle = await sb.files.watchDir('w1', (e) => events.push(e))
  await sb.files.write('w1/a.txt', 'one')
  await sb.files.write('w1/a.txt', 'two')
  await sb.commands.run('chmod 600 w1/a.txt && echo more >> w1/a.txt')
  await sb.files.rename('w1/a.txt', 'w1/b.txt')
  await sb.files.remove('w1/b.txt')
  await sb.files.write('w1/sub/deep.txt', 'not reported')
  await sb.files.write('w1/last.txt', 'last')
  await until(events, (e) => has(e, 'last.txt', FilesystemEventType.WRITE), 'the last write')
  for (const [name, type] of [
    ['a.txt', FilesystemEventType.CREATE],
    ['a.txt', FilesystemEventType.WRITE],
    ['a.txt', FilesystemEventType.CHMOD],
    ['a.txt', FilesystemEventType.RENAME],
    ['b.txt', FilesystemEventType.CREATE],
    ['b.txt', FilesystemEventType.REMOVE],
  ]) {
    assert.ok(has(events, name, type), `${name} ${type} in ${JSON.stringify(events)}`)
  }
  assert.ok(!events.some((e) => e.name.includes('deep.txt')), JSON.stringify(events))
  assert.ok(!events.some((e) => e.name.includes('.sandboxd-write-')), JSON.stringify(events))
  assert.ok(events.every((e) => e.entry === undefined))
  await handle.stop()
})

test('a recursive watch follows new subdirectories, with entries', { timeout: 60_000 }, async () => {
  await sb.files.makeDir('w2/existing')
  const events = []
  const handle = await sb.files.watchDir('w2', (e) => events.push(e), { recursive: true, includeEntry: true })
  await sb.files.write('w2/existing/f.txt', 'f', { metadata: { team: 'infra' } })
  await sb.files.makeDir('w2/new/deeper')
  await until(events, (e) => has(e, 'new/deeper', FilesystemEventType.CREATE), 'the new directories')
  await sb.files.write('w2/new/deeper/g.txt', 'gg')
  await sb.commands.run('mkdir -p w2/x/y && echo z > w2/x/y/z.txt')
  await sb.files.remove('w2/existing/f.txt')
  await until(
    events,
    (e) => has(e, 'new/deeper/g.txt', FilesystemEventType.WRITE) && has(e, 'x/y/z.txt', FilesystemEventType.CREATE) &&
      has(e, 'existing/f.txt', FilesystemEventType.REMOVE),
    'events below the watched directory',
  )
  assert.ok(has(events, 'existing/f.txt', FilesystemEventType.WRITE), JSON.stringify(events))
  assert.ok(has(events, 'new', FilesystemEventType.CREATE), JSON.stringify(events))
  const written = events.find((e) => e.name === 'existing/f.txt' && e.type === FilesystemEventType.WRITE)
  assert.equal(written.entry.path, '/home/user/w2/existing/f.txt')
  assert.equal(written.entry.type, FileType.FILE)
  assert.equal(written.entry.owner, 'user')
  assert.deepEqual(written.entry.metadata, { team: 'infra' })
  const dir = events.find((e) => e.name === 'new/deeper' && e.type === FilesystemEventType.CREATE)
  assert.equal(dir.entry.type, FileType.DIR)
  const removed = events.find((e) => e.name === 'existing/f.txt' && e.type === FilesystemEventType.REMOVE)
  assert.equal(removed.entry, undefined)
  await handle.stop()
})

test('watching what is not a directory fails as envd does; network mounts may be allowed', async () => {
  await assert.rejects(sb.files.watchDir('no/such/dir', () => {}), (e) => e.name === 'FileNotFoundError')
  await sb.files.write('plain.txt', 'x')
  await assert.rejects(sb.files.watchDir('plain.txt', () => {}), (e) => e.name === 'InvalidArgumentError' || e.name === 'SandboxError')
  const handle = await sb.files.watchDir('w1', () => {}, { allowNetworkMounts: true })
  await handle.stop()
})

test('a watch ends at its deadline and the client is told', { timeout: 60_000 }, async () => {
  let exited
  const handle = await sb.files.watchDir('w1', () => {}, { timeoutMs: 1500, onExit: (err) => { exited = err ?? 'clean' } })
  const end = Date.now() + 20_000
  while (exited === undefined && Date.now() < end) await sleep(50)
  assert.ok(exited !== undefined, 'onExit was called')
  await handle.stop()
})

test('watches whose clients went away end in the sandbox', { timeout: 120_000 }, async () => {
  // sandbox-init runs at most 16 watches at once: three rounds of 16 fit only if every
  // stopped (disconnected) watch really ended.
  for (let round = 0; round < 3; round++) {
    const handles = []
    const end = Date.now() + 30_000
    while (handles.length < 16) {
      try {
        handles.push(await sb.files.watchDir('w1', () => {}))
      } catch (e) {
        // The previous round's watches are still ending.
        if (Date.now() > end) throw e
        await sleep(100)
      }
    }
    for (const h of handles) await h.stop()
  }
  // A client that drops the connection mid-stream (no stop): the same.
  const events = []
  const controller = new AbortController()
  const handle = await sb.files.watchDir('w1', (e) => events.push(e), { signal: controller.signal })
  controller.abort()
  await handle.stop()
  await sb.files.write('w1/after.txt', 'x')
  const check = []
  const again = await sb.files.watchDir('w1', (e) => check.push(e))
  await sb.files.write('w1/after.txt', 'y')
  await until(check, (e) => has(e, 'after.txt', FilesystemEventType.WRITE), 'a new watch')
  await again.stop()
})

test('a watch ends when its sandbox is killed', { timeout: 120_000 }, async () => {
  const other = await Sandbox.create('base', { timeoutMs: 120_000 })
  let exited
  try {
    await other.files.watchDir('/home/user', () => {}, { recursive: true, timeoutMs: 0, onExit: (err) => { exited = err ?? 'clean' } })
  } finally {
    await other.kill()
  }
  const end = Date.now() + 20_000
  while (exited === undefined && Date.now() < end) await sleep(50)
  assert.ok(exited !== undefined, 'onExit was called once the sandbox was killed')
})
