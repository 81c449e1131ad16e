// The unmodified e2b SDK against sandboxd's E2B API: the sandbox lifecycle.
// Run by tests/tests/e2b.rs, which starts the daemon and sets E2B_API_URL,
// E2B_SANDBOX_URL and E2B_API_KEY.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'

const made = []
after(async () => {
  for (const sb of made) await Sandbox.kill(sb.sandboxId).catch(() => {})
})

async function eventually(what, withinMs, check) {
  const until = Date.now() + withinMs
  for (;;) {
    if (await check()) return
    if (Date.now() > until) assert.fail(`${what}: not within ${withinMs} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

test('create, info, envs, list with filters and pages, connect, kill', async () => {
  const a = await Sandbox.create('base', {
    timeoutMs: 120_000,
    metadata: { suite: 'e2b-js', which: 'a b&c' },
    envs: { FROM_CREATE: 'hello there' },
  })
  made.push(a)
  assert.match(a.sandboxId, /^sbx-/)
  const info = await a.getInfo()
  assert.equal(info.sandboxId, a.sandboxId)
  assert.equal(info.templateId, 'base')
  assert.equal(info.state, 'running')
  assert.deepEqual(info.metadata, { suite: 'e2b-js', which: 'a b&c' })
  assert.ok(info.startedAt <= new Date() && info.endAt > new Date(Date.now() + 100_000), `${info.endAt}`)
  assert.equal(typeof info.cpuCount, 'number')
  assert.equal(typeof info.memoryMB, 'number')
  assert.equal(await a.isRunning(), true)
  const env = await a.commands.run('echo "$FROM_CREATE"')
  assert.equal(env.stdout, 'hello there\n')

  const b = await Sandbox.create('base', { timeoutMs: 120_000, metadata: { suite: 'e2b-js' } })
  made.push(b)

  const mine = await Sandbox.list({ query: { metadata: { which: 'a b&c' } } }).nextItems()
  assert.deepEqual(mine.map((s) => s.sandboxId), [a.sandboxId])
  assert.equal(mine[0].state, 'running')
  const none = await Sandbox.list({ query: { metadata: { which: 'nope' } } }).nextItems()
  assert.deepEqual(none, [])
  const paused = await Sandbox.list({ query: { state: ['paused'] } }).nextItems()
  assert.deepEqual(paused, [])

  const pages = Sandbox.list({ query: { metadata: { suite: 'e2b-js' } }, limit: 1 })
  const seen = []
  while (pages.hasNext) {
    const items = await pages.nextItems()
    assert.ok(items.length <= 1)
    seen.push(...items.map((s) => s.sandboxId))
  }
  assert.deepEqual(seen.sort(), [a.sandboxId, b.sandboxId].sort())

  const again = await Sandbox.connect(a.sandboxId)
  assert.equal((await again.commands.run('echo again')).stdout, 'again\n')

  // Pause freezes it (isRunning is false, state paused); connect resumes it.
  assert.equal(await a.betaPause(), true)
  assert.equal(await a.isRunning(), false)
  assert.equal((await a.getInfo()).state, 'paused')
  assert.deepEqual((await Sandbox.list({ query: { state: ['paused'] } }).nextItems()).map((s) => s.sandboxId), [a.sandboxId])
  assert.equal(await Sandbox.betaPause(a.sandboxId), false)
  const resumed = await Sandbox.connect(a.sandboxId)
  assert.equal(await resumed.isRunning(), true)
  assert.equal((await resumed.commands.run('echo resumed')).stdout, 'resumed\n')

  assert.equal(await Sandbox.kill(b.sandboxId), true)
  assert.equal(await Sandbox.kill(b.sandboxId), false)
  assert.equal(await b.isRunning(), false)
  await assert.rejects(Sandbox.getInfo(b.sandboxId), (e) => e.name === 'SandboxNotFoundError' || /not found/i.test(e.message))
  await assert.rejects(b.commands.run('true'))
  const after = await Sandbox.list({ query: { metadata: { suite: 'e2b-js' } } }).nextItems()
  assert.deepEqual(after.map((s) => s.sandboxId), [a.sandboxId])
})

test('an agent slug is a template: its Sandbox config applies', async () => {
  const sb = await Sandbox.create('tiny', { timeoutMs: 60_000, envs: { FROM_CALL: 'call' } })
  made.push(sb)
  const out = await sb.commands.run('echo "$FROM_AGENT $FROM_CALL"; cat ~/agent-file.txt')
  assert.equal(out.stdout, 'agent call\nfrom the agent\n')
  assert.equal((await sb.getInfo()).templateId, 'tiny')
  await assert.rejects(Sandbox.create('no-such-template'), /not found/)
})

test('setTimeout is an absolute deadline; connect extends, never shortens', async () => {
  const sb = await Sandbox.create('base', { timeoutMs: 120_000 })
  made.push(sb)
  // Connecting with a shorter timeout keeps the later deadline.
  await Sandbox.connect(sb.sandboxId, { timeoutMs: 5_000 })
  const endAt = (await sb.getInfo()).endAt
  assert.ok(endAt > new Date(Date.now() + 60_000), `${endAt}`)
  await sb.setTimeout(3_000)
  const set = Date.now()
  const newEnd = (await sb.getInfo()).endAt
  assert.ok(newEnd < new Date(Date.now() + 10_000), `${newEnd}`)
  await eventually('the sandbox expires', 30_000, async () => !(await sb.isRunning()))
  console.log(`# expired ${Date.now() - set} ms after setTimeout(3000)`)
  await assert.rejects(Sandbox.getInfo(sb.sandboxId))
  assert.equal(await Sandbox.kill(sb.sandboxId), false)
})
