// The AI SDK's strict clients (5.0.x and 6.x) read a codex agent's turns from a running
// sandboxd (started by tests/tests/clients.rs with the real Codex CLI and a scripted
// OpenAI model): a shell command as a tool part, reasoning, text, and Codex's non-fatal
// warnings, which must not fail the stream. Runs sequentially: the scripted replies are
// consumed in order.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ai5 from "ai5";
import * as ai6 from "ai6";

const url = process.env.SANDBOXD_URL;
const key = process.env.SANDBOXD_API_KEY;
assert.ok(url && key, "SANDBOXD_URL and SANDBOXD_API_KEY must be set");

async function turn(sdk, text) {
  const ids = {};
  const data = [];
  const transport = new sdk.DefaultChatTransport({
    api: `${url}/v1/chat/codex`,
    headers: { Authorization: `Bearer ${key}` },
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      ids.sandboxId = res.headers.get("x-sandbox-id");
      return res;
    },
  });
  const stream = await transport.sendMessages({
    chatId: "codex-chat",
    messages: [{ id: `u-${Math.random()}`, role: "user", parts: [{ type: "text", text }] }],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
  // Every chunk passes the version's strict schema, and the stream folds without errors.
  const [checked, folded] = stream.tee();
  const schema = sdk.uiMessageChunkSchema();
  const chunks = [];
  for await (const chunk of checked) {
    const result = await schema.validate(chunk);
    assert.equal(result.success, true, `${JSON.stringify(chunk)}: ${JSON.stringify(result.error)}`);
    chunks.push(chunk);
    if (chunk.type.startsWith("data-")) data.push(chunk);
  }
  const errors = [];
  let last;
  for await (const message of sdk.readUIMessageStream({ stream: folded, onError: (e) => errors.push(e) })) {
    last = message;
  }
  assert.deepEqual(errors, [], "the stream folded without errors");
  assert.ok(!chunks.some((c) => c.type === "error"), JSON.stringify(chunks));
  return { message: last, data, ...ids };
}

test("ai 5.0.x strict: a codex shell command and its text arrive as the expected parts", async () => {
  const { message, data, sandboxId } = await turn(ai5, "run echo");
  const tool = message.parts.find((p) => p.type === "dynamic-tool");
  assert.ok(tool, JSON.stringify(message.parts));
  assert.equal(tool.toolName, "shell");
  assert.equal(tool.state, "output-available");
  assert.match(tool.input.command, /echo from-codex-v5/);
  assert.equal(tool.output.output, "from-codex-v5\n");
  assert.equal(message.parts.filter((p) => p.type === "text").map((p) => p.text).join(""), "v5 done");
  // Codex's warnings came as transient data chunks, not kept in the message.
  assert.ok(data.some((d) => d.data.notice === "codex-warning" && d.transient), JSON.stringify(data));
  assert.ok(!message.parts.some((p) => p.type.startsWith("data-")), JSON.stringify(message.parts));
  assert.equal(typeof message.metadata.sessionId, "string");
  assert.ok(message.metadata.inputTokens > 0);
  await deleteSandbox(sandboxId);
});

test("ai 6.x: a codex turn's reasoning and text arrive as the expected parts", async () => {
  const { message, sandboxId } = await turn(ai6, "think first");
  const reasoning = message.parts.find((p) => p.type === "reasoning");
  assert.ok(reasoning, JSON.stringify(message.parts));
  assert.match(reasoning.text, /weighing codex/);
  assert.equal(message.parts.filter((p) => p.type === "text").map((p) => p.text).join(""), "v6 reply");
  assert.equal(message.metadata.sandboxId, sandboxId);
  await deleteSandbox(sandboxId);
});

async function deleteSandbox(id) {
  const res = await fetch(`${url}/v1/sandboxes/${id}`, { method: "DELETE", headers: { Authorization: `Bearer ${key}` } });
  assert.equal(res.status, 204);
}
