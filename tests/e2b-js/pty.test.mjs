// The unmodified e2b SDK against sandboxd's E2B API: PTYs (process.Process Start with
// `pty`, SendInput `input.pty`, Update `pty.size`, SendSignal, Connect).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'

let sb
before(async () => {
  sb = await Sandbox.create('base', { timeoutMs: 300_000 })
})
after(async () => {
  if (sb) await sb.kill().catch(() => {})
})

const enc = new TextEncoder()
const dec = new TextDecoder()

// A terminal's output so far, and a way to wait for a piece of it.
function terminal() {
  let text = ''
  const waiters = []
  return {
    onData: (bytes) => {
      text += dec.decode(bytes, { stream: true })
      for (const w of waiters.splice(0)) w()
    },
    get text() {
      return text
    },
    clear() {
      text = ''
    },
    async until(pattern, withinMs = 15_000) {
      const deadline = Date.now() + withinMs
      for (;;) {
        const m = text.match(pattern)
        if (m) return m
        const left = deadline - Date.now()
        if (left <= 0) assert.fail(`terminal never showed ${pattern}; it shows ${JSON.stringify(text)}`)
        await new Promise((r) => {
          waiters.push(r)
          setTimeout(r, Math.min(left, 200))
        })
      }
    },
  }
}

async function eventually(what, withinMs, check) {
  const until = Date.now() + withinMs
  for (;;) {
    if (await check()) return
    if (Date.now() > until) assert.fail(`${what}: not within ${withinMs} ms`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

async function running(pid) {
  return (await sb.commands.list()).some((p) => p.pid === pid)
}

test('create, type, resize, keystroke echo, kill', async () => {
  const term = terminal()
  const pty = await sb.pty.create({ cols: 80, rows: 24, onData: term.onData })
  assert.ok(pty.pid > 0)
  assert.ok(await running(pty.pid))

  await sb.pty.sendInput(pty.pid, enc.encode('echo hi-$((6*7)); stty size; echo "$TERM"\n'))
  await term.until(/hi-42\r?\n/)
  await term.until(/24 80\r?\n/)
  await term.until(/xterm-256color\r?\n/)

  await sb.pty.resize(pty.pid, { cols: 120, rows: 40 })
  term.clear()
  await sb.pty.sendInput(pty.pid, enc.encode('stty size\n'))
  await term.until(/40 120\r?\n/)

  // Keystroke echo: one character, timed until the terminal shows it.
  await term.until(/\$ $/)
  const samples = []
  for (const ch of 'abcde') {
    term.clear()
    const t0 = performance.now()
    await sb.pty.sendInput(pty.pid, enc.encode(ch))
    await term.until(new RegExp(ch))
    samples.push(performance.now() - t0)
  }
  samples.sort((a, b) => a - b)
  console.log(`# PTY keystroke echo: median of 5 ${samples[2].toFixed(1)} ms (min ${samples[0].toFixed(1)}, max ${samples[4].toFixed(1)})`)

  assert.equal(await sb.pty.kill(pty.pid), true)
  const result = await pty.wait().catch((e) => e)
  assert.notEqual(result.exitCode, 0)
  await eventually('the killed PTY leaves the list', 10_000, async () => !(await running(pty.pid)))
  assert.equal(await sb.pty.kill(pty.pid), false)
})

test('a PTY session ends with its exit code; user and cwd apply', async () => {
  const term = terminal()
  const pty = await sb.pty.create({ cols: 80, rows: 24, onData: term.onData, cwd: '/tmp', user: 'root' })
  await sb.pty.sendInput(pty.pid, enc.encode('echo "$(whoami)@$(pwd)"; tty\n'))
  await term.until(/root@\/tmp\r?\n/)
  await term.until(/\/dev\/pts\/\d+\r?\n/)
  await sb.pty.sendInput(pty.pid, enc.encode('exit 3\n'))
  const result = await pty.wait().catch((e) => e)
  assert.equal(result.exitCode, 3)
})

test('connect re-attaches; a PTY no client is attached to lives until its timeout, as on E2B', async () => {
  const first = terminal()
  const pty = await sb.pty.create({ cols: 80, rows: 24, onData: first.onData, timeoutMs: 10_000 })
  await sb.pty.sendInput(pty.pid, enc.encode('sleep 600 & echo "b""g=$!."\n'))
  const bg = Number((await first.until(/bg=(\d+)\./))[1])
  await pty.disconnect()

  // The session is still there and can be re-attached.
  const again = terminal()
  const attached = await sb.pty.connect(pty.pid, { onData: again.onData })
  await sb.pty.sendInput(pty.pid, enc.encode('echo back-$((1+1))\n'))
  await again.until(/back-2\r?\n/)
  await attached.disconnect()

  // Nobody attached any more: at its timeout the shell and what it started go.
  await eventually('the PTY ended at its timeout', 40_000, async () => !(await running(pty.pid)))
  const ps = await sb.commands.run(`ps -o pid= -p ${pty.pid},${bg} || true`)
  assert.equal(ps.stdout.trim(), '', `still running: ${ps.stdout}`)
})
