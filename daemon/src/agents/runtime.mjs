// sandboxd's runtime for TypeScript/JavaScript agents (`agent({...})` of @21st-sdk/agent).
// It only ever runs inside a container, under the image's Node.js:
//
//   node runtime.mjs build <outDir> <entry>...   the loader container: bundle each agent
//                                                file with esbuild (as root), then have
//                                                `describe` run them (as nobody)
//   node runtime.mjs describe <bundle>...        the loader container, as nobody: import
//                                                each bundle in a worker of its own and
//                                                describe it; one JSON line out
//   node runtime.mjs mcp <bundle>                in a sandbox: the agent's tools as a stdio
//                                                MCP server (Claude Code's `agent` server)
//   node runtime.mjs hook <Event> <bundle>       in a sandbox: one Claude Code command hook,
//                                                calling the agent's hook for it
//   node runtime.mjs run-hook <hook> <bundle>    in a sandbox, started by the daemon after a
//                                                turn: onFinish or onError, its payload in
//                                                SANDBOXD_HOOK_PAYLOAD
//
// Tools run in worker threads of the MCP server, so a call past its time bound is
// stopped even when it blocks the event loop (its worker is terminated).
//
// Everything it prints is untrusted input to the daemon, which bounds and validates it.
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { readFileSync, writeFileSync, mkdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { pathToFileURL } from "node:url"
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads"

const TOOL_TIMEOUT_MS = Number(process.env.SANDBOXD_TOOL_TIMEOUT_MS) || 120000
const HOOK_TIMEOUT_MS = Number(process.env.SANDBOXD_HOOK_TIMEOUT_MS) || 10000
// How long evaluating one agent file may take in the loader.
const LOAD_FILE_MS = 20000
// The most the describer may print.
const MAX_DESCRIBED = 8 << 20
const HOOKS = ["onStart", "onToolCall", "onToolResult", "onStepFinish", "onFinish", "onError"]

// The module `@21st-sdk/agent` resolves to in a bundle: the package's own semantics
// (defaults of agent()), provided by the runtime as on the platform.
function shim(withZod) {
  return `
export function agent(config) {
  const runtime = config.runtime ?? "claude-code"
  const systemPrompt = runtime === "claude-code"
    ? (typeof config.systemPrompt === "string"
        ? { type: "preset", preset: "claude_code", append: config.systemPrompt }
        : (config.systemPrompt ?? { type: "preset", preset: "claude_code" }))
    : config.systemPrompt
  return {
    _type: "agent", ...config, runtime,
    model: config.model ?? "claude-sonnet-4-6",
    permissionMode: config.permissionMode ?? "bypassPermissions",
    maxTurns: config.maxTurns ?? 50,
    mcpServers: config.mcpServers ?? [],
    tools: config.tools ?? {},
    systemPrompt,
  }
}
export function tool(config) { return { _type: "tool", ...config } }
export function Sandbox(config = {}) { return { _type: "sandbox", ...config } }
${withZod ? `import * as zodModule from "zod"
export const z = zodModule.z ?? zodModule
globalThis.__sandboxdZod = z` : ""}
`
}

function withTimeout(promise, ms, what) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
  })
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer))
}

function message(error) {
  if (error instanceof Error) return error.message || String(error)
  return String(error)
}

// --- zod to JSON Schema -----------------------------------------------------------

function jsonSchema(schema) {
  const z = globalThis.__sandboxdZod
  if (z && typeof z.toJSONSchema === "function") {
    try {
      const out = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" })
      delete out.$schema
      return out
    } catch {}
  }
  return fromDef(schema)
}

// zod 3 (no toJSONSchema): the common types, anything else accepted as is.
function fromDef(schema) {
  const def = schema?._def ?? {}
  const out = (() => {
    switch (def.typeName) {
      case "ZodObject": {
        const shape = typeof def.shape === "function" ? def.shape() : def.shape ?? {}
        const properties = {}
        const required = []
        for (const [key, value] of Object.entries(shape)) {
          properties[key] = fromDef(value)
          const t = value?._def?.typeName
          if (t !== "ZodOptional" && t !== "ZodDefault") required.push(key)
        }
        return { type: "object", properties, required, additionalProperties: false }
      }
      case "ZodString": return { type: "string" }
      case "ZodNumber": return { type: "number" }
      case "ZodBoolean": return { type: "boolean" }
      case "ZodArray": return { type: "array", items: fromDef(def.type) }
      case "ZodEnum": return { type: "string", enum: def.values }
      case "ZodLiteral": return { const: def.value }
      case "ZodOptional": case "ZodDefault": return fromDef(def.innerType)
      case "ZodNullable": return { anyOf: [fromDef(def.innerType), { type: "null" }] }
      default: return {}
    }
  })()
  if (def.description) out.description = def.description
  return out
}

// --- loading ----------------------------------------------------------------------

async function importAgent(bundle) {
  const module = await import(pathToFileURL(bundle).href)
  const config = module.default
  if (!config || typeof config !== "object" || config._type !== "agent") {
    throw new Error("the file does not `export default agent({...})` from @21st-sdk/agent")
  }
  return config
}

function describe(config) {
  const definition = {}
  for (const key of ["runtime", "model", "systemPrompt", "permissionMode", "maxTurns",
    "maxBudgetUsd", "maxSandboxBudgetUsd", "disallowedTools"]) {
    if (config[key] !== undefined) definition[key] = config[key]
  }
  if (Array.isArray(config.mcpServers) && config.mcpServers.length > 0) {
    definition.mcpServers = config.mcpServers
  }
  if (config.sandbox && typeof config.sandbox === "object") {
    const { _type, ...sandbox } = config.sandbox
    definition.sandbox = sandbox
  }
  const tools = []
  for (const [name, t] of Object.entries(config.tools ?? {})) {
    if (!t || typeof t.execute !== "function") {
      throw new Error(`tool ${JSON.stringify(name)} has no execute function`)
    }
    if (!t.inputSchema || typeof t.inputSchema.safeParse !== "function") {
      throw new Error(`tool ${JSON.stringify(name)} has no zod inputSchema`)
    }
    tools.push({ name, description: String(t.description ?? ""), inputSchema: jsonSchema(t.inputSchema) })
  }
  const hooks = HOOKS.filter((h) => typeof config[h] === "function")
  return { definition, tools, hooks }
}

// Each file is evaluated in a worker thread of its own: one whose top level never
// ends (a `while (true)`, a promise never settled) is terminated at its bound while the
// others load.
function describeApart(bundle, ms) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { describe: bundle }, stdout: true, stderr: true,
    })
    worker.stdout.pipe(process.stderr)
    worker.stderr.pipe(process.stderr)
    const timer = setTimeout(() => {
      worker.terminate()
      reject(new Error(`evaluating the agent file did not finish within ${ms / 1000} s (does its top level loop or wait forever?)`))
    }, ms)
    const settle = (f) => (value) => { clearTimeout(timer); worker.terminate(); f(value) }
    worker.once("message", settle((m) => (m?.error === undefined ? resolve(m.described) : reject(new Error(m.error)))))
    worker.once("error", settle(reject))
    worker.once("exit", settle((code) => reject(new Error(`evaluating the agent file ended its thread (code ${code})`))))
  })
}

async function describeWorker(bundle) {
  try {
    // Only what survives JSON goes back, as the daemon reads it.
    const described = JSON.parse(JSON.stringify(describe(await importAgent(bundle))))
    parentPort.postMessage({ described })
  } catch (error) {
    parentPort.postMessage({ error: message(error) })
  }
}

async function build(outDir, entries) {
  const esbuild = await import("/usr/local/lib/node_modules/esbuild/lib/main.js")
  const results = []
  // Sources deployed through the API (under /deployed) resolve from the project.
  const nodePaths = (process.env.SANDBOXD_NODE_PATHS ?? "").split(":").filter(Boolean)
  for (const [index, entry] of entries.entries()) {
    const bundle = join(outDir, `${index}.mjs`)
    try {
      let withZod = true
      try {
        await esbuild.build({
          stdin: { contents: 'import "zod"', resolveDir: dirname(entry) },
          bundle: true, write: false, logLevel: "silent", platform: "node", nodePaths,
        })
      } catch { withZod = false }
      await esbuild.build({
        entryPoints: [entry],
        outfile: bundle,
        bundle: true,
        format: "esm",
        platform: "node",
        target: "node22",
        logLevel: "silent",
        nodePaths,
        // CommonJS dependencies that require() Node builtins, inside an ESM bundle.
        banner: { js: 'import { createRequire as __sbxRequire } from "node:module"; const require = __sbxRequire(import.meta.url);' },
        plugins: [{
          name: "sandboxd-agent",
          setup(b) {
            b.onResolve({ filter: /^@21st-sdk\/agent$/ }, () => ({ path: "agent", namespace: "sandboxd" }))
            b.onLoad({ filter: /.*/, namespace: "sandboxd" }, () => ({
              contents: shim(withZod), loader: "js", resolveDir: dirname(entry),
            }))
          },
        }],
      })
      results.push({ entry, ok: true, bundle: `${index}.mjs` })
    } catch (error) {
      const errors = error?.errors?.length
        ? error.errors.map((e) => (e.location ? `${e.location.file}:${e.location.line}:${e.location.column}: ${e.text}` : e.text)).join("\n")
        : message(error)
      results.push({ entry, ok: false, error: errors })
    }
  }
  // Only now does the files' own code run, in a process of an account that cannot
  // write the output (the root filesystem is read-only too; /tmp is memory, bounded).
  const built = results.filter((r) => r.ok)
  const described = await describeAsNobody(built.map((r) => join(outDir, r.bundle)))
  built.forEach((r, i) => {
    const d = described[i] ?? { error: "the describer said nothing about this file" }
    if (d.error !== undefined) Object.assign(r, { ok: false, error: String(d.error) })
    else Object.assign(r, d.described)
  })
  writeFileSync(join(outDir, "result.json"), JSON.stringify(results))
}

// Runs `describe` over the bundles as `nobody`; its last line of output is the answer.
function describeAsNobody(bundles) {
  if (bundles.length === 0) return Promise.resolve([])
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [new URL(import.meta.url).pathname, "describe", ...bundles], {
      uid: 65534, gid: 65534, stdio: ["ignore", "pipe", "inherit"],
    })
    const chunks = []
    let size = 0
    const fail = (why) => resolve(bundles.map(() => ({ error: why })))
    const timer = setTimeout(() => { child.kill("SIGKILL") }, bundles.length * LOAD_FILE_MS + 30000)
    child.stdout.on("data", (chunk) => {
      size += chunk.length
      if (size > MAX_DESCRIBED) { child.kill("SIGKILL"); return }
      chunks.push(chunk)
    })
    child.on("error", (e) => { clearTimeout(timer); fail(`could not evaluate the files: ${message(e)}`) })
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      if (size > MAX_DESCRIBED) return fail(`evaluating the files printed more than ${MAX_DESCRIBED >> 20} MiB`)
      const lines = Buffer.concat(chunks).toString("utf8").split("\n").filter((l) => l.trim())
      try {
        const answer = JSON.parse(lines.at(-1) ?? "")
        if (!Array.isArray(answer)) throw new Error("not a list")
        resolve(answer)
      } catch {
        fail(`evaluating the files ended without an answer (${signal ?? `exit code ${code}`})`)
      }
    })
  })
}

async function describeAll(bundles) {
  const answer = []
  for (const bundle of bundles) {
    try {
      answer.push({ described: await describeApart(bundle, LOAD_FILE_MS) })
    } catch (error) {
      answer.push({ error: message(error) })
    }
  }
  process.stdout.write("\n" + JSON.stringify(answer) + "\n", () => process.exit(0))
}

// --- in the sandbox ---------------------------------------------------------------

function agentEnv() {
  const env = {}
  for (const name of (process.env.SANDBOXD_AGENT_ENV ?? "").split(",")) {
    if (name && process.env[name] !== undefined) env[name] = process.env[name]
  }
  return env
}

function toolResult(value) {
  if (!value || typeof value !== "object" || !Array.isArray(value.content)) {
    return { content: [{ type: "text", text: typeof value === "string" ? value : JSON.stringify(value ?? null) }] }
  }
  const content = value.content.map((c) => {
    if (c?.type === "image" && typeof c.data === "string" && typeof c.mimeType === "string") {
      return { type: "image", data: c.data, mimeType: c.mimeType }
    }
    if (c?.type === "text") return { type: "text", text: String(c.text ?? "") }
    return { type: "text", text: JSON.stringify(c) }
  })
  return { content, isError: value.isError === true }
}

// Worker threads the tools' `execute` runs in, one call at a time each: an idle one is
// reused (so a module's state lives on between calls), another started for calls in
// parallel, and one whose call runs past its bound is terminated.
const idle = []

function startWorker(bundle) {
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { bundle }, stdout: true, stderr: true,
  })
  // Whatever the tools print goes to stderr: stdout carries the protocol.
  worker.stdout.pipe(process.stderr)
  worker.stderr.pipe(process.stderr)
  const state = { worker, call: null, dead: false }
  state.ready = new Promise((resolve, reject) => {
    worker.once("message", (m) => (m?.loadError ? reject(new Error(m.loadError)) : resolve()))
    worker.once("error", reject)
  })
  state.ready.catch(() => {})
  const end = (why) => {
    state.dead = true
    const at = idle.indexOf(state)
    if (at >= 0) idle.splice(at, 1)
    state.call?.reject(new Error(why))
    state.call = null
  }
  worker.on("message", (m) => {
    if (m && "result" in m && state.call) {
      const call = state.call
      state.call = null
      if (!state.dead) idle.push(state)
      call.resolve(m.result)
    }
  })
  worker.on("error", (e) => end(`the tool's code failed outside the call: ${message(e)}`))
  worker.on("exit", (code) => end(`its worker exited (code ${code})`))
  return state
}

async function callTool(config, bundle, name, args) {
  const t = config.tools?.[name]
  if (!t) return { content: [{ type: "text", text: `unknown tool ${JSON.stringify(name)}` }], isError: true }
  const parsed = t.inputSchema.safeParse(args ?? {})
  if (!parsed.success) {
    const issues = (parsed.error?.issues ?? []).map((i) => `${(i.path ?? []).join(".") || "(input)"}: ${i.message}`)
    return { content: [{ type: "text", text: `invalid input for ${name}: ${issues.join("; ") || message(parsed.error)}` }], isError: true }
  }
  const state = idle.pop() ?? startWorker(bundle)
  let timer
  try {
    const result = new Promise((resolve, reject) => {
      state.call = { resolve, reject }
      state.ready.then(() => state.worker.postMessage({ name, args: parsed.data }), reject)
    })
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        // Stopped even if it never yields: its worker goes.
        state.dead = true
        state.call = null
        state.worker.terminate()
        reject(new Error(`it did not finish within ${TOOL_TIMEOUT_MS} ms and was stopped`))
      }, TOOL_TIMEOUT_MS)
    })
    return await Promise.race([result, timeout])
  } catch (error) {
    return { content: [{ type: "text", text: `${name} failed: ${message(error)}` }], isError: true }
  } finally {
    clearTimeout(timer)
  }
}

// In the worker thread: runs the calls the MCP server posts.
async function serveTools(bundle) {
  let config
  try { config = await importAgent(bundle) } catch (error) {
    parentPort.postMessage({ loadError: message(error) })
    return
  }
  parentPort.on("message", async ({ name, args }) => {
    let result
    try {
      result = toolResult(await config.tools[name].execute(args, { env: agentEnv() }))
    } catch (error) {
      result = { content: [{ type: "text", text: `${name} failed: ${message(error)}` }], isError: true }
    }
    parentPort.postMessage({ result })
  })
  parentPort.postMessage({ ready: true })
}

async function mcp(bundle) {
  // stdout carries the protocol only: whatever the agent's code prints goes to stderr.
  const send = process.stdout.write.bind(process.stdout)
  process.stdout.write = process.stderr.write.bind(process.stderr)
  console.log = console.info = console.debug = console.error
  const reply = (id, result, error) =>
    send(JSON.stringify(error ? { jsonrpc: "2.0", id, error } : { jsonrpc: "2.0", id, result }) + "\n")
  let config
  let loadError
  try { config = await importAgent(bundle) } catch (e) { loadError = message(e) }
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
  const inflight = new Set()
  for await (const line of lines) {
    let request
    try { request = JSON.parse(line) } catch { continue }
    const { id, method, params } = request ?? {}
    if (id === undefined || id === null) continue // a notification
    if (method === "initialize") {
      reply(id, {
        protocolVersion: params?.protocolVersion ?? "2025-06-18",
        capabilities: { tools: {} },
        serverInfo: { name: "sandboxd-agent", version: "1" },
      })
    } else if (method === "ping") {
      reply(id, {})
    } else if (method === "tools/list") {
      const tools = config
        ? Object.entries(config.tools ?? {}).map(([name, t]) => ({
            name, description: String(t.description ?? ""), inputSchema: jsonSchema(t.inputSchema),
          }))
        : []
      reply(id, { tools })
    } else if (method === "tools/call") {
      if (!config) {
        reply(id, { content: [{ type: "text", text: `the agent did not load: ${loadError}` }], isError: true })
        continue
      }
      const call = callTool(config, bundle, params?.name, params?.arguments).then((r) => reply(id, r))
      inflight.add(call)
      call.finally(() => inflight.delete(call))
    } else {
      reply(id, undefined, { code: -32601, message: `method ${method} is not supported` })
    }
  }
  // Claude Code closed the connection: answer what is running, then go (the workers'
  // pipes would keep Node alive).
  await Promise.allSettled([...inflight])
  process.exit(0)
}

// Claude Code hook events and the agent hooks they call, with the payloads of
// @21st-sdk/agent's src/types.ts. onFinish and onError are run by the daemon when the
// turn has ended (`run-hook`), with the cost and usage the CLI reported.
const EVENTS = {
  SessionStart: ["onStart", (p) => ({ sessionId: p.session_id ?? "", model: process.env.SANDBOXD_MODEL ?? "", tools: [] })],
  PreToolUse: ["onToolCall", (p) => ({ toolName: p.tool_name, input: p.tool_input ?? {} })],
  PostToolUse: ["onToolResult", (p) => ({ toolName: p.tool_name, input: p.tool_input ?? {}, output: p.tool_response })],
  PostToolUseFailure: ["onToolResult", (p) => ({ toolName: p.tool_name, input: p.tool_input ?? {}, output: p.tool_response ?? { isError: true, error: p.error } })],
  PostToolBatch: ["onStepFinish", (p) => ({ message: p.last_assistant_message ?? p, cost: 0 })],
}

async function hook(event, bundle) {
  const [name, payloadOf] = EVENTS[event] ?? []
  const finish = (output) => {
    if (output) process.stdout.write(JSON.stringify(output) + "\n")
    process.exit(0)
  }
  const send = process.stdout.write.bind(process.stdout)
  process.stdout.write = process.stderr.write.bind(process.stderr)
  console.log = console.info = console.debug = console.error
  const output = await (async () => {
    if (!name) return null
    try {
      const input = JSON.parse(readFileSync(0, "utf8").slice(0, 8 << 20) || "{}")
      const config = await importAgent(bundle)
      const value = await withTimeout(config[name]?.(payloadOf(input)), HOOK_TIMEOUT_MS, `the ${name} hook`)
      if (name === "onToolCall" && value === false) {
        return { hookSpecificOutput: { hookEventName: "PreToolUse", permissionDecision: "deny",
          permissionDecisionReason: `the agent's onToolCall hook blocked ${input.tool_name}` } }
      }
      return null
    } catch (error) {
      // The turn goes on; the runner records this line in the thread's events.
      return { systemMessage: `[sandboxd agent hook] ${name} failed: ${message(error)}`.slice(0, 2000) }
    }
  })()
  process.stdout.write = send
  finish(output)
}

// One hook the daemon runs after a turn; the last line printed says how it went.
async function runHook(name, bundle) {
  const send = process.stdout.write.bind(process.stdout)
  process.stdout.write = process.stderr.write.bind(process.stderr)
  console.log = console.info = console.debug = console.error
  let outcome
  try {
    if (name !== "onFinish" && name !== "onError") throw new Error(`no such hook: ${name}`)
    const payload = JSON.parse(process.env.SANDBOXD_HOOK_PAYLOAD || "{}")
    if (name === "onError") {
      const error = new Error(String(payload.error?.message ?? "the turn failed"))
      payload.error = error
    }
    const config = await importAgent(bundle)
    await withTimeout(config[name]?.(payload), HOOK_TIMEOUT_MS, `the ${name} hook`)
    outcome = { ok: true }
  } catch (error) {
    outcome = { error: message(error).slice(0, 2000) }
  }
  send(JSON.stringify(outcome) + "\n", () => process.exit(0))
}

const [mode, ...rest] = isMainThread
  ? process.argv.slice(2)
  : [workerData.describe ? "describe-worker" : "tool-worker"]
if (mode === "describe-worker") {
  await describeWorker(workerData.describe)
} else if (mode === "tool-worker") {
  await serveTools(workerData.bundle)
} else if (mode === "run-hook") {
  await runHook(rest[0], rest[1])
} else if (mode === "describe") {
  await describeAll(rest)
} else if (mode === "build") {
  mkdirSync(rest[0], { recursive: true })
  await build(rest[0], rest.slice(1))
  process.exit(0)
} else if (mode === "mcp") {
  await mcp(rest[0])
} else if (mode === "hook") {
  await hook(rest[0], rest[1])
} else {
  console.error("usage: runtime.mjs build|mcp|hook|run-hook …")
  process.exit(2)
}
