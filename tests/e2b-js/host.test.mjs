// The unmodified e2b SDK's getHost(port) against sandboxd: servers bound to localhost
// only are reached (sandbox-init dials them inside the sandbox), WebSockets pass
// through, a closed port is the SDK's 502, and killing the sandbox drops a WebSocket.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { Sandbox } from 'e2b'
import { Agent, WebSocket } from 'undici'

const origin = new URL(process.env.E2B_API_URL)

let sb
before(async () => {
  sb = await Sandbox.create('base', { timeoutMs: 300_000 })
})
after(async () => {
  if (sb) await sb.kill().catch(() => {})
})

// Node does not resolve *.localhost to the daemon's 127.0.0.1 here: send the Host by
// hand for HTTP, and give WebSockets a connector that dials 127.0.0.1 for any name.
function call(host, method, path, body) {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: origin.hostname, port: origin.port, method, path, headers: { Host: host } },
      (res) => {
        let text = ''
        res.on('data', (d) => (text += d))
        res.on('end', () => resolve({ status: res.statusCode, text }))
        res.on('error', reject)
        res.on('aborted', () => reject(new Error(`aborted after ${text.length} bytes`)))
      },
    )
    const timer = setTimeout(() => {
      reject(new Error('no answer within 30 s'))
      req.destroy()
    }, 30_000)
    req.on('close', () => clearTimeout(timer))
    req.on('error', reject)
    req.end(body)
  })
}

const loopback = new Agent({
  connect: {
    lookup: (_name, options, cb) =>
      options && options.all
        ? cb(null, [{ address: origin.hostname, family: 4 }])
        : cb(null, origin.hostname, 4),
  },
})

async function eventually(what, withinMs, check) {
  const until = Date.now() + withinMs
  for (;;) {
    const got = await check()
    if (got) return got
    if (Date.now() > until) assert.fail(`${what}: not within ${withinMs} ms`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

// A minimal RFC 6455 echo server (Node's http + a hand-made upgrade): no npm inside.
const WS_SERVER = `
const http = require('http'), crypto = require('crypto')
const port = Number(process.argv[2])
const server = http.createServer((q, r) => r.end('plain http'))
server.on('upgrade', (req, socket) => {
  const accept = crypto.createHash('sha1')
    .update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
  socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n' +
    'Sec-WebSocket-Accept: ' + accept + '\\r\\n\\r\\n')
  let buf = Buffer.alloc(0)
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d])
    for (;;) {
      if (buf.length < 2) return
      const op = buf[0] & 15
      let len = buf[1] & 127, off = 2
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4 }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10 }
      const masked = (buf[1] & 128) !== 0
      const mask = masked ? buf.subarray(off, off + 4) : null
      if (masked) off += 4
      if (buf.length < off + len) return
      const payload = Buffer.from(buf.subarray(off, off + len))
      buf = buf.subarray(off + len)
      if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4]
      if (op === 8) { socket.end(Buffer.from([0x88, 0])); return }
      if (op === 1) {
        const out = Buffer.from('echo: ' + payload.toString())
        const head = out.length < 126 ? Buffer.from([0x81, out.length])
          : Buffer.from([0x81, 126, out.length >> 8, out.length & 255])
        socket.write(Buffer.concat([head, out]))
      }
    }
  })
  socket.on('error', () => {})
})
server.listen(port, '127.0.0.1')
`

async function startEcho(sandbox, port) {
  await sandbox.files.write('/home/user/ws-echo.js', WS_SERVER)
  await sandbox.commands.run(`node /home/user/ws-echo.js ${port}`, { background: true, timeoutMs: 0 })
  const host = sandbox.getHost(port)
  await eventually('the echo server answers', 20_000, async () => {
    const got = await call(host, 'GET', '/').catch(() => null)
    return got && got.status === 200
  })
  return host
}

function open(host) {
  const ws = new WebSocket(`ws://${host}/`, { dispatcher: loopback })
  const closed = new Promise((resolve) => ws.addEventListener('close', (e) => resolve(e)))
  const opened = new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve)
    ws.addEventListener('error', (e) => reject(new Error(`websocket error: ${e.message}`)))
  })
  return { ws, opened, closed }
}

function nextMessage(ws) {
  return new Promise((resolve) =>
    ws.addEventListener('message', (e) => resolve(e.data), { once: true }),
  )
}

function within(ms, what, promise) {
  let timer
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

test('getHost reaches a server bound to 127.0.0.1 only', async () => {
  await sb.files.write('/home/user/site/hello.txt', 'hello from localhost\n')
  await sb.commands.run('cd /home/user/site && python3 -m http.server --bind 127.0.0.1 8000', {
    background: true,
    timeoutMs: 0,
  })
  const host = sb.getHost(8000)
  const got = await eventually('the localhost-only server answers', 20_000, async () => {
    const r = await call(host, 'GET', '/hello.txt')
    return r.status === 200 && r.text
  })
  assert.equal(got, 'hello from localhost\n')
  // It is not on the sandbox's network interface: only the dial inside reaches it.
  const outside = await sb.commands.run(
    `python3 -c "import socket; s=socket.socket(); s.settimeout(3); print(s.connect_ex((socket.gethostbyname(socket.gethostname()), 8000)))"`,
  )
  assert.notEqual(outside.stdout.trim(), '0')

  const times = []
  for (let i = 0; i < 20; i++) {
    const t = process.hrtime.bigint()
    const r = await call(host, 'GET', '/hello.txt')
    times.push(Number(process.hrtime.bigint() - t) / 1e6)
    assert.equal(r.status, 200)
  }
  times.sort((a, b) => a - b)
  console.log(`getHost HTTP latency over 20 requests: median ${((times[9] + times[10]) / 2).toFixed(1)} ms, max ${times[19].toFixed(1)} ms`)
})

test('a WebSocket to a server in the sandbox is passed through', async () => {
  const host = await startEcho(sb, 8001)
  const { ws, opened, closed } = open(host)
  await within(20_000, 'the websocket opens', opened)
  const reply = nextMessage(ws)
  ws.send('hello over getHost')
  assert.equal(await within(20_000, 'the echo', reply), 'echo: hello over getHost')
  const big = 'x'.repeat(5000)
  const second = nextMessage(ws)
  ws.send(big)
  assert.equal(await within(20_000, 'the big echo', second), `echo: ${big}`)
  ws.close()
  await within(20_000, 'the websocket closes', closed)
})

test('a port nothing listens on is the 502 the SDK expects', async () => {
  const got = await call(sb.getHost(8009), 'GET', '/')
  assert.equal(got.status, 502)
  const body = JSON.parse(got.text)
  assert.equal(body.code, 502)
  assert.match(body.message, /nothing answers on port 8009/)
})

// A hostile server: a head bigger than any bound, a response cut short, and one that
// never answers (it logs when its connection closes).
const HOSTILE_SERVER = `
const net = require('net'), fs = require('fs')
net.createServer((socket) => {
  socket.on('error', () => {})
  socket.once('data', (d) => {
    const path = d.toString().split(' ')[1]
    if (path === '/huge') {
      socket.write('HTTP/1.1 200 OK\\r\\nX-Big: ' + 'a'.repeat(4 << 20) + '\\r\\n\\r\\n')
    } else if (path === '/cut') {
      socket.write('HTTP/1.1 200 OK\\r\\nContent-Length: 100000\\r\\n\\r\\nonly this')
      setTimeout(() => socket.destroy(), 100)
    } else if (path === '/never') {
      fs.appendFileSync('/home/user/never.log', 'open\\n')
      socket.on('close', () => fs.appendFileSync('/home/user/never.log', 'closed\\n'))
    }
  })
}).listen(8003, '127.0.0.1')
`

test('a hostile server: a huge head, a response cut short, a client that leaves', async () => {
  await sb.files.write('/home/user/hostile.js', HOSTILE_SERVER)
  await sb.commands.run('node /home/user/hostile.js', { background: true, timeoutMs: 0 })
  const host = sb.getHost(8003)
  await eventually('the hostile server listens', 20_000, async () => {
    const r = await sb.commands.run(
      `python3 -c "import socket; print(socket.socket().connect_ex(('127.0.0.1', 8003)))"`,
    )
    return r.stdout.trim() === '0'
  })

  const huge = await call(host, 'GET', '/huge').catch((e) => assert.fail(`/huge: ${e}`))
  assert.equal(huge.status, 502, huge.text)
  assert.match(JSON.parse(huge.text).message, /port 8003/)

  const cut = await within(40_000, '/cut', call(host, 'GET', '/cut')).then(
    (r) => r,
    (e) => ({ error: e }),
  )
  assert.ok(cut.error || cut.text.length < 100000, 'a cut response is not passed off as whole')

  // The client goes away while the server never answers: the dial is closed.
  await new Promise((resolve) => {
    const req = request({
      host: origin.hostname,
      port: origin.port,
      path: '/never',
      headers: { Host: host },
    })
    req.on('error', () => resolve())
    req.end()
    setTimeout(() => {
      req.destroy()
      resolve()
    }, 1500)
  })
  await eventually('the never-answered connection is closed', 20_000, async () => {
    const log = await sb.files.read('/home/user/never.log').catch(() => '')
    return log === 'open\nclosed\n'
  })
})

test('killing the sandbox drops an open WebSocket', async () => {
  const other = await Sandbox.create('base', { timeoutMs: 120_000 })
  try {
    const host = await startEcho(other, 8002)
    const { ws, opened, closed } = open(host)
    await within(20_000, 'the websocket opens', opened)
    const reply = nextMessage(ws)
    ws.send('ping')
    assert.equal(await within(20_000, 'the echo', reply), 'echo: ping')
    await other.kill()
    const event = await within(30_000, 'the websocket is dropped', closed)
    assert.notEqual(event.code, 1000, 'not a clean close from the server')
    const after = await call(host, 'GET', '/')
    assert.notEqual(after.status, 200)
  } finally {
    await other.kill().catch(() => {})
  }
})
