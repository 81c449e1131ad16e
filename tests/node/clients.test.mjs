// The real client packages against a running sandboxd (started by tests/tests/clients.rs
// with a scripted model): the AI SDK's DefaultChatTransport + readUIMessageStream pinned
// to a strict 5.0.x and to a 6.x, and @21st-sdk/node. Runs sequentially: the scripted
// replies are consumed in order.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ai5 from "ai5";
import * as ai6 from "ai6";
import { AgentClient } from "@21st-sdk/node";
import { createAnTokenHandler, exchangeToken } from "@21st-sdk/nextjs/server";

const url = process.env.SANDBOXD_URL;
const key = process.env.SANDBOXD_API_KEY;
assert.ok(url && key, "SANDBOXD_URL and SANDBOXD_API_KEY must be set");

const userMessage = (text) => ({ id: `u-${Math.random()}`, role: "user", parts: [{ type: "text", text }] });

/**
 * Sends one turn through a version's transport and reads it like useChat does.
 * `onMessage(message, ids)` sees each message state as it streams; `ids` holds the
 * sandbox and thread from the response headers.
 */
async function turn(sdk, text, body = {}, bearer = key, onMessage = async () => {}) {
  const ids = {};
  const transport = new sdk.DefaultChatTransport({
    api: `${url}/v1/chat/test`,
    headers: { Authorization: `Bearer ${bearer}` },
    body,
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      ids.sandboxId = res.headers.get("x-sandbox-id");
      ids.threadId = res.headers.get("x-thread-id");
      return res;
    },
  });
  const stream = await transport.sendMessages({
    chatId: "chat-1",
    messages: [userMessage(text)],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
  const errors = [];
  let last;
  for await (const message of sdk.readUIMessageStream({ stream, onError: (e) => errors.push(e) })) {
    last = message;
    await onMessage(message, ids);
  }
  assert.deepEqual(errors, [], "the stream validated without errors");
  return { message: last, ...ids };
}

test("control: both pinned versions reject unknown chunk fields (strict schemas)", async () => {
  for (const sdk of [ai5, ai6]) {
    const schema = sdk.uiMessageChunkSchema();
    assert.equal((await schema.validate({ type: "text-start", id: "1" })).success, true);
    assert.equal((await schema.validate({ type: "text-start", id: "1", extra: 1 })).success, false);
  }
});

test("ai 5.0.x strict: a tool call and text arrive as the expected parts", async () => {
  const { message, sandboxId } = await turn(ai5, "write a file");
  assert.equal(message.role, "assistant");
  const types = message.parts.map((p) => p.type);
  assert.ok(types.includes("step-start"), types.join());
  const tool = message.parts.find((p) => p.type === "dynamic-tool");
  assert.equal(tool.toolName, "Bash");
  assert.equal(tool.state, "output-available");
  assert.equal(tool.output.stdout, "from v5");
  const text = message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
  assert.match(text, /v5 done/);
  assert.equal(typeof message.metadata.sessionId, "string");
  assert.ok(message.metadata.totalCostUsd > 0);
  assert.equal(message.metadata.sandboxId, sandboxId);
  await deleteSandbox(sandboxId);
});

test("ai 6.x: reasoning and text arrive as the expected parts", async () => {
  const { message, sandboxId } = await turn(ai6, "think first");
  const reasoning = message.parts.find((p) => p.type === "reasoning");
  assert.ok(reasoning, JSON.stringify(message.parts));
  assert.match(reasoning.text, /weighing/);
  const text = message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
  assert.equal(text, "v6 reply");
  assert.equal(message.metadata.threadId.startsWith("th_"), true);
  await deleteSandbox(sandboxId);
});

test("@21st-sdk/node: sandboxes, files, exec, threads.run and thread calls", async () => {
  const client = new AgentClient({ apiKey: key, baseUrl: url });
  const sandbox = await client.sandboxes.create({ agent: "test", files: { "notes/a.txt": "alpha" }, envs: { FROM_SDK: "yes" } });
  assert.equal(sandbox.status, "active");
  const detail = await client.sandboxes.get(sandbox.id);
  assert.equal(detail.agent.slug, "test");

  const exec = await client.sandboxes.exec({ sandboxId: sandbox.id, command: "cat notes/a.txt; echo \" $FROM_SDK\"", timeoutMs: 10_000 });
  assert.equal(exec.stdout, "alpha yes\n");
  assert.equal(exec.exitCode, 0);
  await client.sandboxes.files.write({ sandboxId: sandbox.id, files: { "b.txt": "beta" } });
  assert.equal((await client.sandboxes.files.read({ sandboxId: sandbox.id, path: "b.txt" })).content, "beta");
  assert.equal(await client.sandboxes.files.exists({ sandboxId: sandbox.id, path: "b.txt" }), true);
  const listing = await client.sandboxes.files.list({ sandboxId: sandbox.id, path: "/home/user", depth: 1 });
  assert.ok(listing.some((e) => e.name === "b.txt" && e.type === "file"));

  const thread = await client.threads.create({ sandboxId: sandbox.id, name: "From the SDK" });
  assert.equal(thread.name, "From the SDK");
  const run = await client.threads.run({
    agent: "test",
    sandboxId: sandbox.id,
    threadId: thread.id,
    messages: [{ role: "user", parts: [{ type: "text", text: "hello sdk" }] }],
  });
  assert.equal(run.resumeUrl, `${url}/v1/chat/test/${sandbox.id}/stream`);
  const body = await run.response.text();
  assert.match(body, /"type":"text-delta"/);
  assert.match(body, /data: \[DONE\]/);

  const got = await client.threads.get({ sandboxId: sandbox.id, threadId: thread.id });
  assert.equal(got.status, "completed");
  assert.equal(got.messages.length, 2);
  assert.equal(got.messages[1].parts.find((p) => p.type === "text").text, "sdk reply");
  assert.ok(got.usage.totalCostUsd > 0);

  const background = await client.threads.run({
    agent: "test",
    sandboxId: sandbox.id,
    threadId: thread.id,
    mode: "background",
    messages: [{ role: "user", parts: [{ type: "text", text: "in the background" }] }],
  });
  assert.equal(background.status, "running");
  let polled;
  for (let i = 0; i < 300; i++) {
    polled = await client.threads.get({ sandboxId: sandbox.id, threadId: thread.id });
    if (polled.status !== "streaming") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(polled.status, "completed");
  assert.equal(polled.messages.length, 4);

  const threads = await client.threads.list({ sandboxId: sandbox.id });
  assert.equal(threads.length, 1);
  await client.threads.delete({ sandboxId: sandbox.id, threadId: thread.id });
  assert.equal((await client.threads.list({ sandboxId: sandbox.id })).length, 0);
  await client.sandboxes.delete(sandbox.id);
  await assert.rejects(client.sandboxes.get(sandbox.id), /does not exist/);
});

test("@21st-sdk/nextjs/server exchangeToken: a browser token chats with its agent only", async () => {
  const { token, expiresAt } = await exchangeToken({ apiKey: key, relayUrl: url, agent: "test", userId: "user-node", expiresIn: "30m" });
  assert.equal(token.split(".").length, 3);
  assert.ok(Date.parse(expiresAt) > Date.now() + 29 * 60 * 1000);
  const { message, sandboxId } = await turn(ai5, "as a browser user", {}, token);
  assert.equal(message.parts.filter((p) => p.type === "text").map((p) => p.text).join(""), "token reply");
  const denied = await fetch(`${url}/v1/sandboxes`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(denied.status, 403);
  await deleteSandbox(sandboxId);
});

test("token errors read well in every client: exchangeToken, createAnTokenHandler, @21st-sdk/node", async () => {
  // exchangeToken throws new Error(body.error): the message, not [object Object].
  await assert.rejects(exchangeToken({ apiKey: "sk_wrong", relayUrl: url, agent: "test" }), (e) => {
    assert.match(e.message, /^invalid API key/);
    return true;
  });
  await assert.rejects(exchangeToken({ apiKey: key, relayUrl: url, agent: "nope" }), /agent nope|nope/);
  // The stock token route passes that message on to the browser.
  const handler = createAnTokenHandler({ apiKey: "sk_wrong", relayUrl: url });
  const answer = await handler(new Request("http://x/api/an-token", { method: "POST", body: JSON.stringify({ agent: "test" }) }));
  assert.equal(answer.status, 500);
  assert.match((await answer.json()).error, /^invalid API key/);
  // @21st-sdk/node reads body.error.message, which a string lacks: it says the status.
  const client = new AgentClient({ apiKey: "sk_wrong", baseUrl: url });
  await assert.rejects(client.tokens.create({ agent: "test" }), /Request failed: 401/);
  // Every other route keeps {"error": {code, message}}, which it shows.
  await assert.rejects(client.sandboxes.get("sb_nope"), /invalid API key/);
});

test("permission requests reach strict clients as a data part that is answered in place", async () => {
  for (const [sdk, text] of [[ai5, "ask v5"], [ai6, "ask v6"]]) {
    const answered = new Set();
    const { message: last, sandboxId } = await turn(sdk, text, { options: { permissionMode: "default" } }, key,
      async (message, { sandboxId, threadId }) => {
        for (const part of message.parts) {
          if (part.type === "data-permission-request" && part.data.status === "pending" && !answered.has(part.id)) {
            answered.add(part.id);
            assert.equal(part.data.toolName, "Bash");
            const res = await fetch(
              `${url}/v1/sandboxes/${sandboxId}/threads/${threadId}/permissions/${part.data.requestId}`,
              { method: "POST", headers: { Authorization: `Bearer ${key}` }, body: JSON.stringify({ reply: "once" }) },
            );
            assert.equal(res.status, 200);
          }
        }
      });
    assert.equal(answered.size, 1, JSON.stringify(last.parts));
    const requests = last.parts.filter((p) => p.type === "data-permission-request");
    assert.equal(requests.length, 1, "the answer updated the part in place");
    assert.equal(requests[0].data.status, "resolved");
    assert.equal(requests[0].data.reply, "once");
    const tool = last.parts.find((p) => p.type === "dynamic-tool");
    assert.equal(tool.state, "output-available");
    assert.equal(tool.output.stdout, "allowed", JSON.stringify(tool));
    await deleteSandbox(sandboxId);
  }
});

async function deleteSandbox(id) {
  const res = await fetch(`${url}/v1/sandboxes/${id}`, { method: "DELETE", headers: { Authorization: `Bearer ${key}` } });
  assert.equal(res.status, 204);
}
