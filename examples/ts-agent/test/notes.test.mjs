// A hermetic test of the notes agent: sandboxd runs the real Claude Code CLI in a real
// sandbox against a scripted model (script.json) that calls the agent's own tool, so
// the tool's `execute` runs exactly as in production, offline and for free.
//
//   SANDBOXD_BIN=path/to/sandboxd SANDBOXD_CLAUDE_BIN=path/to/claude node --test
import { test } from "node:test"
import assert from "node:assert/strict"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const project = join(dirname(fileURLToPath(import.meta.url)), "..")
const bin = process.env.SANDBOXD_BIN ?? "sandboxd"
const key = "example-test-key"

function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

async function until(what, seconds, check) {
  const deadline = Date.now() + seconds * 1000
  for (;;) {
    const value = await check().catch(() => undefined)
    if (value) return value
    if (Date.now() > deadline) throw new Error(`${what}: not within ${seconds} s`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

test("the notes agent saves a note with its own tool", async (t) => {
  // Undone in reverse order at the end, whatever happens.
  const cleanups = []
  t.after(async () => {
    for (const undo of cleanups.reverse()) await undo().catch(() => {})
  })
  // The scripted model prints its address on its first line.
  const model = spawn(bin, ["scripted-model", "--listen", "127.0.0.1:0", "--script", join(project, "script.json")])
  cleanups.push(async () => model.kill())
  const modelUrl = await new Promise((resolve, reject) => {
    model.stdout.once("data", (line) => resolve(String(line).trim().replace("listening on ", "")))
    model.once("exit", () => reject(new Error("scripted-model exited")))
  })

  const port = await freePort()
  const state = mkdtempSync(join(tmpdir(), "notes-test-"))
  cleanups.push(async () => rmSync(state, { recursive: true, force: true }))
  const args = ["serve", "--listen", `127.0.0.1:${port}`, "--agents-dir", join(project, "agents"),
    "--state-dir", state, "--model-upstream", modelUrl]
  if (process.env.SANDBOXD_CLAUDE_BIN) args.push("--claude-bin", process.env.SANDBOXD_CLAUDE_BIN)
  if (process.env.SANDBOXD_TEST_LABEL) args.push("--label", process.env.SANDBOXD_TEST_LABEL)
  const daemon = spawn(bin, args, { env: { ...process.env, SANDBOXD_API_KEY: key }, stdio: "ignore" })
  const exited = new Promise((resolve) => daemon.once("exit", resolve))
  cleanups.push(async () => { daemon.kill("SIGTERM"); await exited })
  const api = (path, init = {}) =>
    fetch(`http://127.0.0.1:${port}${path}`, {
      ...init, headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    })
  await until("the daemon is ready", 600, async () => (await api("/healthz")).ok)

  const response = await api("/v1/chat/notes", {
    method: "POST",
    body: JSON.stringify({ messages: [{ id: "m1", role: "user", parts: [{ type: "text", text: "Save a note: buy milk" }] }] }),
  })
  assert.equal(response.status, 200)
  const sandbox = response.headers.get("x-sandbox-id")
  cleanups.push(() => api(`/v1/sandboxes/${sandbox}`, { method: "DELETE" }))
  const chunks = (await response.text()).split("\n")
    .filter((l) => l.startsWith("data: {")).map((l) => JSON.parse(l.slice(6)))

  const call = chunks.find((c) => c.type === "tool-input-available")
  assert.equal(call.toolName, "mcp__agent__save_note")
  const output = chunks.find((c) => c.type === "tool-output-available")
  assert.match(JSON.stringify(output.output), /saved 8 bytes to notes\/todo.txt/)
  const text = chunks.filter((c) => c.type === "text-delta").map((c) => c.delta).join("")
  assert.match(text, /Saved your note/)

  // The tool really ran in the sandbox.
  const exec = await (await api(`/v1/sandboxes/${sandbox}/exec`, {
    method: "POST", body: JSON.stringify({ command: "cat /home/user/notes/todo.txt" }),
  })).json()
  assert.equal(exec.stdout, "buy milk")

  // onFinish ran after the turn with its cost and usage.
  const last = await (await api(`/v1/sandboxes/${sandbox}/exec`, {
    method: "POST", body: JSON.stringify({ command: "cat /home/user/.last-turn.json" }),
  })).json()
  const finished = JSON.parse(last.stdout)
  assert.ok(finished.cost > 0, last.stdout)
  assert.ok(finished.usage.outputTokens > 0, last.stdout)
  assert.equal(finished.turns, 2)
})
