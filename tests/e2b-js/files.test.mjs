// The unmodified e2b SDK against sandboxd's E2B API: files (`/files` upload and
// download, filesystem.Filesystem over Connect).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, FileType } from 'e2b'
import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'

let sb
before(async () => {
  sb = await Sandbox.create('base', { timeoutMs: 300_000 })
})
after(async () => {
  if (sb) await sb.kill().catch(() => {})
})

test('write and read text and bytes, octet-stream and multipart', async () => {
  const info = await sb.files.write('notes/hello.txt', 'hello, files\n')
  assert.equal(info.path, '/home/user/notes/hello.txt')
  assert.equal(info.name, 'hello.txt')
  assert.equal(await sb.files.read('notes/hello.txt'), 'hello, files\n')
  assert.equal(await sb.files.read('/home/user/notes/hello.txt'), 'hello, files\n')

  const bytes = Uint8Array.from({ length: 256 }, (_, i) => i)
  await sb.files.write('bin/all-bytes', bytes)
  assert.deepEqual(await sb.files.read('bin/all-bytes', { format: 'bytes' }), bytes)

  await sb.files.write('octet.txt', 'through octet-stream', { useOctetStream: true })
  assert.equal(await sb.files.read('octet.txt'), 'through octet-stream')

  const many = await sb.files.write([
    { path: 'batch/a.txt', data: 'A' },
    { path: 'batch/deep/b.txt', data: 'B' },
    { path: '/tmp/c.txt', data: new TextEncoder().encode('C') },
  ])
  assert.deepEqual(many.map((e) => e.path).sort(), ['/home/user/batch/a.txt', '/home/user/batch/deep/b.txt', '/tmp/c.txt'])
  assert.equal((await sb.commands.run('cat batch/a.txt batch/deep/b.txt /tmp/c.txt')).stdout, 'ABC')

  const big = 'compressible line\n'.repeat(10_000)
  await sb.files.write('gz/big.txt', big, { gzip: true })
  assert.equal(await sb.files.read('gz/big.txt', { gzip: true }), big)
  assert.equal(await sb.files.read('gz/big.txt'), big)

  const streamed = new ReadableStream({
    start(c) {
      for (let i = 0; i < 100; i++) c.enqueue(new TextEncoder().encode(`chunk ${i}\n`))
      c.close()
    },
  })
  await sb.files.write('streamed.txt', streamed)
  const back = await sb.files.read('streamed.txt', { format: 'stream' })
  let text = ''
  for await (const part of back) text += new TextDecoder().decode(part)
  assert.equal(text, Array.from({ length: 100 }, (_, i) => `chunk ${i}\n`).join(''))

  await sb.files.write('empty.txt', '')
  assert.equal(await sb.files.read('empty.txt'), '')

  await assert.rejects(sb.files.read('no/such/file'), (e) => e.name === 'FileNotFoundError' || e.name === 'NotFoundError')
})

test('list with depth, exists, getInfo, makeDir, rename, remove', async () => {
  await sb.files.write('tree/one.txt', '1')
  await sb.files.write('tree/sub/two.txt', '22')
  const shallow = await sb.files.list('tree')
  assert.deepEqual(shallow.map((e) => [e.name, e.type]).sort(), [['one.txt', FileType.FILE], ['sub', FileType.DIR]])
  const deep = await sb.files.list('tree', { depth: 2 })
  assert.deepEqual(deep.map((e) => e.path).sort(), ['/home/user/tree/one.txt', '/home/user/tree/sub', '/home/user/tree/sub/two.txt'])

  assert.equal(await sb.files.exists('tree/one.txt'), true)
  assert.equal(await sb.files.exists('tree/nope.txt'), false)

  const info = await sb.files.getInfo('tree/sub/two.txt')
  assert.equal(info.name, 'two.txt')
  assert.equal(info.type, FileType.FILE)
  assert.equal(info.size, 2)
  assert.equal(info.owner, 'user')
  assert.equal(info.group, 'user')
  assert.equal(info.permissions, '-rw-r--r--')
  assert.equal(info.mode, 0o644)
  assert.ok(info.modifiedTime instanceof Date && Math.abs(info.modifiedTime - Date.now()) < 120_000, `${info.modifiedTime}`)
  await sb.commands.run('ln -s tree/one.txt link')
  // As envd: a link has its target's type, and names its target (newer SDKs read
  // envd's isSymlink and show it as a link); a dangling one stays a link.
  const link = await sb.files.getInfo('link')
  assert.equal(link.type, FileType.FILE)
  assert.equal(link.symlinkTarget, '/home/user/tree/one.txt')
  await sb.commands.run('ln -s tree dirlink && ln -s nowhere dangling')
  const dirLink = await sb.files.getInfo('dirlink')
  assert.equal(dirLink.type, FileType.DIR)
  assert.equal(dirLink.symlinkTarget, '/home/user/tree')
  assert.equal((await sb.files.getInfo('dangling')).type, FileType.SYMLINK)
  const home = await sb.files.list('.')
  assert.equal(home.find((e) => e.name === 'dirlink')?.type, FileType.DIR)
  await sb.commands.run('rm dirlink dangling')

  assert.equal(await sb.files.makeDir('made/here'), true)
  assert.equal(await sb.files.makeDir('made/here'), false)
  assert.equal((await sb.files.getInfo('made/here')).type, FileType.DIR)

  const moved = await sb.files.rename('tree/one.txt', 'tree/uno.txt')
  assert.equal(moved.path, '/home/user/tree/uno.txt')
  assert.equal(await sb.files.exists('tree/one.txt'), false)
  assert.equal(await sb.files.read('tree/uno.txt'), '1')

  await sb.files.remove('tree')
  assert.equal(await sb.files.exists('tree'), false)
  // As envd (rm -rf): removing what is not there is no error.
  await sb.files.remove('tree')
})

test('files act as the user asked for', async () => {
  await sb.files.write('/root/secret.txt', 'root only', { user: 'root' })
  assert.equal(await sb.files.read('/root/secret.txt', { user: 'root' }), 'root only')
  assert.equal((await sb.files.getInfo('/root/secret.txt', { user: 'root' })).owner, 'root')
  await assert.rejects(sb.files.read('/root/secret.txt'))
  await assert.rejects(sb.files.write('/etc/not-yours', 'x'))
  const mine = await sb.files.getInfo('notes/hello.txt')
  assert.equal(mine.owner, 'user')
})

test('signed upload and download URLs work without headers; bad ones get envd 401s', async () => {
  await sb.files.write('signed.txt', 'signed content')
  const url = await sb.downloadUrl('signed.txt')
  assert.match(url, /signature=v1_/)
  const res = await fetch(url)
  assert.equal(res.status, 200)
  assert.equal(await res.text(), 'signed content')

  const timed = await sb.downloadUrl('signed.txt', { useSignatureExpiration: 60 })
  assert.equal((await fetch(timed)).status, 200)

  const expired = await sb.downloadUrl('signed.txt', { useSignatureExpiration: -10_000 })
  const late = await fetch(expired)
  assert.equal(late.status, 401)
  assert.deepEqual(await late.json(), { code: 401, message: 'signature is already expired' })

  const forged = new URL(url)
  forged.searchParams.set('signature', 'v1_' + 'A'.repeat(43))
  const bad = await fetch(forged)
  assert.equal(bad.status, 401)
  assert.deepEqual(await bad.json(), { code: 401, message: 'invalid signature' })
  // A signature for reading does not write.
  const asWrite = await fetch(url, { method: 'POST', body: new FormData() })
  assert.equal(asWrite.status, 401)

  // Nor does one for writing read: not GET, not HEAD (which would tell whether the
  // file exists, and its size).
  const writeOnly = await sb.uploadUrl('signed.txt')
  assert.equal((await fetch(writeOnly)).status, 401)
  assert.equal((await fetch(writeOnly, { method: 'HEAD' })).status, 401)
  assert.equal((await fetch(url, { method: 'HEAD' })).status, 200)

  const up = await sb.uploadUrl('uploaded/by-url.txt')
  const form = new FormData()
  form.append('file', new Blob(['from a signed url']), 'by-url.txt')
  const posted = await fetch(up, { method: 'POST', body: form })
  assert.equal(posted.status, 200, await posted.clone().text())
  assert.equal(await sb.files.read('uploaded/by-url.txt'), 'from a signed url')
})

test('metadata: written as user.e2b.* attributes, read back by write, getInfo and list', async () => {
  const info = await sb.files.write('meta/a.txt', 'a', { metadata: { Team: 'infra', 'build-id': '42' } })
  const expected = { team: 'infra', 'build-id': '42' }
  assert.deepEqual(info.metadata, expected)
  assert.deepEqual((await sb.files.getInfo('meta/a.txt')).metadata, expected)
  const octet = await sb.files.write('meta/b.txt', 'b', { metadata: { k: 'v' }, useOctetStream: true })
  assert.deepEqual(octet.metadata, { k: 'v' })
  const listed = await sb.files.list('meta')
  assert.deepEqual(Object.fromEntries(listed.map((e) => [e.name, e.metadata])), { 'a.txt': expected, 'b.txt': { k: 'v' } })
  // The attributes are real: what the sandbox itself sees.
  const attrs = await sb.commands.run(`python3 -c "import os; print(sorted(os.listxattr('meta/a.txt')))"`)
  assert.equal(attrs.stdout.trim(), "['user.e2b.build-id', 'user.e2b.team']")
  // Set inside the sandbox, it shows too; a rewrite without metadata clears it.
  await sb.commands.run(`python3 -c "import os; os.setxattr('meta/b.txt', 'user.e2b.from', b'inside')"`)
  assert.deepEqual((await sb.files.getInfo('meta/b.txt')).metadata, { k: 'v', from: 'inside' })
  await sb.files.write('meta/a.txt', 'again')
  assert.equal((await sb.files.getInfo('meta/a.txt')).metadata, undefined)
  // envd's bound: at most 4 KiB of metadata on a file.
  await assert.rejects(sb.files.write('meta/c.txt', 'c', { metadata: { big: 'x'.repeat(5000) } }))
  assert.equal(await sb.files.exists('meta/c.txt'), false)
})

/** The daemon's resident memory, in KiB (`VmRSS` or the peak `VmHWM`). */
function daemonKiB(field) {
  const status = readFileSync(`/proc/${process.env.SANDBOXD_PID}/status`, 'utf8')
  return Number(status.match(new RegExp(`${field}:\\s+(\\d+) kB`))[1])
}

/** 100 MiB in 1 MiB chunks (each a different byte), as a stream; feeds `hash`. */
function bigStream(hash) {
  const size = 100 << 20
  let sent = 0
  return new ReadableStream({
    pull(c) {
      if (sent >= size) return c.close()
      const chunk = Buffer.alloc(1 << 20, (sent >> 20) % 251)
      hash.update(chunk)
      sent += chunk.length
      c.enqueue(new Uint8Array(chunk))
    },
  })
}

async function streamedHash(path, opts) {
  const back = await sb.files.read(path, { format: 'stream', ...opts })
  const hash = createHash('sha256')
  let size = 0
  for await (const part of back) {
    hash.update(part)
    size += part.length
  }
  return [size, hash.digest('hex')]
}

test('a 100 MB file goes both ways streamed: the daemon memory stays flat', { timeout: 600_000 }, async () => {
  assert.ok(process.env.SANDBOXD_PID, 'the daemon pid')
  // The peak is measured from here (writing 5 to clear_refs resets VmHWM).
  writeFileSync(`/proc/${process.env.SANDBOXD_PID}/clear_refs`, '5')
  const before = daemonKiB('VmRSS')

  const up = createHash('sha256')
  await sb.files.write('big/octet.bin', bigStream(up))
  const expected = up.digest('hex')
  const sum = await sb.commands.run('sha256sum big/octet.bin && stat -c %s big/octet.bin')
  assert.equal(sum.stdout.split(/\s+/)[0], expected)
  assert.equal(sum.stdout.trim().split('\n')[1], String(100 << 20))
  assert.deepEqual(await streamedHash('big/octet.bin'), [100 << 20, expected])

  // Multipart (a Blob is sent as form data), and gzip both ways.
  const blob = await new Response(bigStream(createHash('sha256'))).blob()
  await sb.files.write('big/multipart.bin', blob)
  assert.deepEqual(await streamedHash('big/multipart.bin'), [100 << 20, expected])
  const gz = createHash('sha256')
  await sb.files.write('big/gzip.bin', bigStream(gz), { gzip: true })
  assert.equal(gz.digest('hex'), expected)
  assert.deepEqual(await streamedHash('big/gzip.bin', { gzip: true }), [100 << 20, expected])

  const peak = daemonKiB('VmHWM')
  console.log(`daemon RSS before ${before} KiB, peak during the transfers ${peak} KiB (+${peak - before} KiB)`)
  assert.ok(peak - before < 64 * 1024, `the daemon grew by ${peak - before} KiB`)
  await sb.files.remove('big')
})

test('an upload cut off mid-stream changes nothing and leaves nothing behind', { timeout: 120_000 }, async () => {
  await sb.files.write('cut/keep.txt', 'kept')
  const controller = new AbortController()
  let sent = 0
  const body = new ReadableStream({
    async pull(c) {
      if (sent >= 20 << 20) {
        controller.abort()
        return new Promise(() => {})
      }
      sent += 1 << 20
      c.enqueue(new Uint8Array(1 << 20))
    },
  })
  await assert.rejects(sb.files.write('cut/keep.txt', body, { signal: controller.signal }))
  const end = Date.now() + 20_000
  let left
  do {
    await new Promise((r) => setTimeout(r, 100))
    left = (await sb.commands.run('ls -a cut')).stdout.split('\n').filter((n) => n && n !== '.' && n !== '..')
  } while (left.length !== 1 && Date.now() < end)
  assert.deepEqual(left, ['keep.txt'])
  assert.equal(await sb.files.read('cut/keep.txt'), 'kept')
})
