// The unmodified e2b SDK against sandboxd's E2B API: commands (process.Process over
// Connect with the JSON codec, streams over HTTP/1.1).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, CommandExitError } from 'e2b'

let sb
before(async () => {
  sb = await Sandbox.create('base', { timeoutMs: 300_000 })
})
after(async () => {
  if (sb) await sb.kill().catch(() => {})
})

async function eventually(what, withinMs, check) {
  const until = Date.now() + withinMs
  for (;;) {
    if (await check()) return
    if (Date.now() > until) assert.fail(`${what}: not within ${withinMs} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function running(pid) {
  return (await sb.commands.list()).some((p) => p.pid === pid)
}

test('foreground run: output, exit code, cwd, envs, user', async () => {
  const out = await sb.commands.run('echo out; echo err >&2; pwd; whoami')
  assert.equal(out.exitCode, 0)
  assert.equal(out.stdout, 'out\n/home/user\nuser\n')
  assert.equal(out.stderr, 'err\n')

  await sb.commands.run('mkdir -p work/dir')
  const cwd = await sb.commands.run('pwd', { cwd: 'work/dir' })
  assert.equal(cwd.stdout, '/home/user/work/dir\n')
  const abs = await sb.commands.run('pwd', { cwd: '/tmp' })
  assert.equal(abs.stdout, '/tmp\n')

  const envs = await sb.commands.run('echo "$A-$B"', { envs: { A: 'one', B: 'two words' } })
  assert.equal(envs.stdout, 'one-two words\n')

  const root = await sb.commands.run('whoami; id -u', { user: 'root' })
  assert.equal(root.stdout, 'root\n0\n')
})

test('a non-zero exit is a CommandExitError; broken UTF-8 is replaced', async () => {
  await assert.rejects(sb.commands.run('echo partial; echo bad >&2; exit 3'), (e) => {
    assert.ok(e instanceof CommandExitError, `${e}`)
    assert.equal(e.exitCode, 3)
    assert.equal(e.stdout, 'partial\n')
    assert.equal(e.stderr, 'bad\n')
    return true
  })
  const broken = await sb.commands.run("printf 'a\\xff\\xfeb\\n'")
  assert.equal(broken.stdout, 'a\ufffd\ufffdb\n')
})

test('onStdout and onStderr stream as output comes; first-byte latency', async () => {
  const chunks = []
  const started = performance.now()
  let firstByte
  const out = await sb.commands.run('echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three', {
    onStdout: (d) => {
      firstByte ??= performance.now() - started
      chunks.push(['out', d, performance.now()])
    },
    onStderr: (d) => chunks.push(['err', d, performance.now()]),
  })
  assert.deepEqual(chunks.map(([k, d]) => [k, d]), [['out', 'one\n'], ['err', 'two\n'], ['out', 'three\n']])
  // Streamed, not delivered at the end: the first chunk came before the last was written.
  assert.ok(chunks[0][2] < chunks[2][2] - 200, 'output arrived as it was written')
  assert.equal(out.stdout, 'one\nthree\n')
  const samples = []
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now()
    let t
    await sb.commands.run('echo hi', { onStdout: () => { t ??= performance.now() - t0 } })
    samples.push(t)
  }
  samples.sort((a, b) => a - b)
  console.log(`# first byte of a streamed command: first ${firstByte.toFixed(1)} ms, median of 5 'echo hi' ${samples[2].toFixed(1)} ms`)
})

test('timeoutMs kills the command at its deadline', async () => {
  const t0 = Date.now()
  await assert.rejects(
    sb.commands.run('echo $$ > /tmp/timeout.pid; exec sleep 60', { timeoutMs: 1500 }),
    (e) => {
      assert.match(e.name, /Timeout/, `${e.name}: ${e.message}`)
      return true
    },
  )
  assert.ok(Date.now() - t0 < 30_000)
  const pid = (await sb.commands.run('cat /tmp/timeout.pid')).stdout.trim()
  await eventually('the timed-out process is gone', 15_000, async () => {
    const r = await sb.commands.run(`kill -0 ${pid} 2>/dev/null && echo alive || echo gone`)
    return r.stdout === 'gone\n'
  })
})

test('background: list, kill, stdin, close stdin, connect(pid)', async () => {
  const bg = await sb.commands.run('sleep 120', { background: true })
  assert.ok(await running(bg.pid))
  const listed = (await sb.commands.list()).find((p) => p.pid === bg.pid)
  assert.equal(listed.cmd, '/bin/bash')
  assert.deepEqual(listed.args, ['-l', '-c', 'sleep 120'])
  assert.equal(await sb.commands.kill(bg.pid), true)
  await assert.rejects(bg.wait(), (e) => e instanceof CommandExitError && e.exitCode !== 0)
  await eventually('the killed process leaves the list', 5_000, async () => !(await running(bg.pid)))
  await eventually('the killed process is gone from the sandbox', 5_000, async () => {
    const r = await sb.commands.run(`kill -0 ${bg.pid} 2>/dev/null && echo alive || echo gone`)
    return r.stdout === 'gone\n'
  })
  assert.equal(await sb.commands.kill(bg.pid), false)

  const seen = []
  const cat = await sb.commands.run('cat', { background: true, stdin: true, onStdout: (d) => seen.push(d) })
  await sb.commands.sendStdin(cat.pid, 'hello ')
  await cat.sendStdin('stdin\n')
  await sb.commands.closeStdin(cat.pid)
  const done = await cat.wait()
  assert.equal(done.stdout, 'hello stdin\n')
  assert.equal(seen.join(''), 'hello stdin\n')

  const wc = await sb.commands.run('wc -c', { background: true, stdin: true })
  await wc.sendStdin('x'.repeat(200_000) + '\n')
  await wc.closeStdin()
  assert.equal((await wc.wait()).stdout.trim(), '200001')
  const noStdin = await sb.commands.run('sleep 30', { background: true })
  await assert.rejects(noStdin.sendStdin('x'), /without stdin/)
  assert.equal(await noStdin.kill(), true)

  const slow = await sb.commands.run('for i in 1 2 3; do echo $i; sleep 0.4; done', { background: true })
  await slow.disconnect()
  const again = await sb.commands.connect(slow.pid)
  const result = await again.wait()
  assert.equal(result.exitCode, 0)
  // After the exit, a late connect still sees it (kept as envd keeps it).
  const late = await sb.commands.connect(slow.pid)
  assert.equal((await late.wait()).exitCode, 0)
})

test('ten background processes in parallel', async () => {
  const handles = await Promise.all(
    Array.from({ length: 10 }, (_, i) => sb.commands.run(`sleep 0.5; echo proc-${i}`, { background: true })),
  )
  assert.equal(new Set(handles.map((h) => h.pid)).size, 10)
  const results = await Promise.all(handles.map((h) => h.wait()))
  assert.deepEqual(results.map((r) => r.stdout), Array.from({ length: 10 }, (_, i) => `proc-${i}\n`))
})

test('a background process outlives the client that disconnects, as on E2B, until its timeout or a kill', async () => {
  const marker = `marker-${Date.now()}`
  const h = await sb.commands.run(`echo started; exec -a ${marker} sleep 300`, { background: true, timeoutMs: 0 })
  await eventually('the process runs', 5_000, async () => running(h.pid))
  await h.disconnect()
  const timed = await sb.commands.run('sleep 300', { background: true, timeoutMs: 3_000 })
  await timed.disconnect()
  // Longer than the 10 s after which sandboxd used to kill a process no client stayed
  // attached to (E2B's envd keeps it: a server started in the background is connected
  // to later).
  await new Promise((r) => setTimeout(r, 12_000))
  assert.equal(await running(h.pid), true, 'the process died with its client')
  const alive = await sb.commands.run(`pgrep -f "^${marker}" >/dev/null && echo alive || echo gone`)
  assert.equal(alive.stdout, 'alive\n')
  // One with a timeout still ends at it, attached or not.
  assert.equal(await running(timed.pid), false, 'the timed-out process still runs')

  const again = await sb.commands.connect(h.pid)
  assert.equal(await sb.commands.kill(h.pid), true)
  const result = await again.wait().catch((e) => e)
  assert.ok(result instanceof CommandExitError, `${result}`)
  await eventually('the killed process is gone', 10_000, async () => !(await running(h.pid)))
})

test('killing the sandbox ends its open streams at once', async () => {
  const other = await Sandbox.create('base', { timeoutMs: 60_000 })
  const h = await other.commands.run('sleep 300', { background: true })
  const ended = h.wait().then(() => 'resolved', (e) => e)
  const t0 = Date.now()
  await other.kill()
  const outcome = await ended
  assert.notEqual(outcome, 'resolved')
  console.log(`# stream ended ${Date.now() - t0} ms after kill: ${outcome.name}`)
  assert.equal(await other.isRunning(), false)
})

test('getHost(port): a server in the sandbox is reachable through the daemon', async () => {
  const server = await sb.commands.run(
    `node -e "require('http').createServer((q, r) => { let b = ''; q.on('data', (d) => b += d); q.on('end', () => r.end(q.method + ' ' + q.url + ' ' + b)) }).listen(8000, '0.0.0.0')"`,
    { background: true, timeoutMs: 0 },
  )
  const host = sb.getHost(8000)
  assert.equal(host, `8000-${sb.sandboxId}.${new URL(process.env.E2B_API_URL).host.replace('127.0.0.1', 'localhost')}`)
  // Node does not resolve *.localhost without libnss-myhostname: send the Host by hand.
  const { request } = await import('node:http')
  const origin = new URL(process.env.E2B_API_URL)
  const call = (method, path, body) =>
    new Promise((resolve, reject) => {
      const req = request(
        { host: origin.hostname, port: origin.port, method, path, headers: { Host: host } },
        (res) => {
          let text = ''
          res.on('data', (d) => (text += d))
          res.on('end', () => resolve({ status: res.statusCode, text }))
        },
      )
      req.on('error', reject)
      req.end(body)
    })
  let got
  const until = Date.now() + 15_000
  for (;;) {
    got = await call('GET', '/hello?x=1')
    if (got.status === 200 || Date.now() > until) break
    await new Promise((r) => setTimeout(r, 200))
  }
  assert.equal(got.status, 200, got.text)
  assert.equal(got.text, 'GET /hello?x=1 ')
  const posted = await call('POST', '/echo', 'some body')
  assert.equal(posted.text, 'POST /echo some body')
  await server.kill()
  // The kill is answered once the signal is sent: the server may take a moment to go.
  let closed
  await eventually('the killed server stops answering', 10_000, async () => {
    closed = await call('GET', '/')
    return closed.status !== 200
  })
  assert.equal(closed.status, 502)
  assert.match(JSON.parse(closed.text).message, /nothing answers on port 8000/)
})
