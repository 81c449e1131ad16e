// Tests in a real browser: Debian's chromium driven by playwright-core, against a
// daemon started by tests/tests/browser.rs (SANDBOXD_URL, SANDBOXD_API_KEY) behind a
// scripted model whose replies are listed there, in the order these tests use them.
// Screenshots of the console go to SANDBOXD_ARTIFACTS.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { AgentClient } from "@21st-sdk/node";
import { createAnTokenHandler } from "@21st-sdk/nextjs/server";

const url = process.env.SANDBOXD_URL;
const key = process.env.SANDBOXD_API_KEY;
const artifacts = process.env.SANDBOXD_ARTIFACTS;
assert.ok(url && key && artifacts, "run through tests/tests/browser.rs");
mkdirSync(artifacts, { recursive: true });

const an = new AgentClient({ apiKey: key, baseUrl: url });
let browser;
let other; // { server, origin, tokens: [] }

/** Waits for `fn(arg)` to be true in the page, failing with `what` at the deadline. */
async function until(page, what, fn, arg, timeout = 60_000) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 100 });
  } catch (e) {
    const text = await page.locator("body").innerText().catch(() => "(no page)");
    throw new Error(`${what} (within ${timeout} ms): ${e.message}\npage text:\n${text.slice(0, 2000)}`);
  }
}

/** Polls `check()` in this process until it returns a value, or fails with `what`. */
async function eventually(what, check, timeout = 60_000) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} (within ${timeout} ms); last: ${JSON.stringify(last)}`);
}

const textIn = (needle) => document.body.innerText.includes(needle);

async function newPage() {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  // Every click, fill and navigation has a deadline (Playwright waits forever by default).
  page.setDefaultTimeout(60_000);
  const seen = { urls: [], errors: [] };
  page.on("request", (r) => seen.urls.push(r.url()));
  page.on("pageerror", (e) => seen.errors.push(String(e)));
  page.on("response", (r) => {
    if (r.status() >= 400) seen.errors.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  page.on("console", (m) => {
    // A failed response is reported above, with its URL.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) seen.errors.push(m.text());
  });
  return { page, seen };
}

/**
 * Types a message and sends it, as a person would: once the chat is ready (while a
 * resume on opening is still asking the server, Enter sends nothing), and sees it
 * taken (it shows in the conversation).
 */
async function send(page, text) {
  await until(page, "the chat is ready to send", () =>
    (document.querySelector(".conversation")?.dataset.status ?? window.__chat?.status) === "ready");
  const box = page.locator(".an-root textarea");
  await box.fill(text);
  await box.press("Enter");
  await until(page, `the message "${text}" was taken`, (t) =>
    [...document.querySelectorAll(".an-root *")].some((e) => e.tagName !== "TEXTAREA" && e.childElementCount === 0 && e.textContent.includes(t)), text);
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, name), fullPage: false });
}

async function api(method, path, body) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: res.status === 204 ? null : await res.json() };
}

/** The other origin: the page, its bundle, a stock token route and the sessions. */
async function startOtherOrigin() {
  const bundle = await build({
    entryPoints: ["page/app.jsx"],
    bundle: true,
    write: false,
    format: "esm",
    target: "es2022",
    jsx: "automatic",
    define: { "process.env.NODE_ENV": '"production"' },
    logLevel: "warning",
  });
  const js = bundle.outputFiles[0].text;
  // The components' stylesheet, and the root's flex column it leaves out (its
  // utilities are scoped under .an-root).
  const css = `${readFileSync("node_modules/@21st-sdk/react/dist/styles.css", "utf8")}
.an-root { display: flex; flex-direction: column; height: 100%; }
.an-root > .an-message-list { flex: 1 1 0%; min-height: 0; overflow-y: auto; }`;
  // The token route exactly as the seeds write it; 30 s tokens, so the chat's fetcher
  // (which renews a minute before expiry) asks for a new one on every request.
  const handler = createAnTokenHandler({ apiKey: key, relayUrl: url, expiresIn: "30s" });
  const sessions = new Map();
  const state = { tokens: [], origin: "" };
  const server = createServer(async (req, res) => {
    const here = new URL(req.url, "http://x");
    try {
      if (here.pathname === "/") {
        res.setHeader("content-type", "text/html");
        res.end('<!doctype html><link rel="stylesheet" href="/app.css"><div id="root"></div><script type="module" src="/app.js"></script>');
      } else if (here.pathname === "/app.js") {
        res.setHeader("content-type", "text/javascript");
        res.end(js);
      } else if (here.pathname === "/app.css") {
        res.setHeader("content-type", "text/css");
        res.end(css);
      } else if (here.pathname === "/favicon.ico") {
        res.writeHead(204).end();
      } else if (here.pathname === "/api/an-token" && req.method === "POST") {
        let body = "";
        for await (const chunk of req) body += chunk;
        const answer = await handler(new Request("http://x/api/an-token", { method: "POST", body }));
        const data = await answer.json();
        if (data.token) state.tokens.push(data.token);
        res.writeHead(answer.status, { "content-type": "application/json" });
        res.end(JSON.stringify(data));
      } else if (here.pathname === "/api/session") {
        // The seeds' session pattern: the server makes the sandbox and thread with the
        // API key, stores their ids, and loads the thread's history for the page.
        const id = here.searchParams.get("session");
        let s = id ? sessions.get(id) : {};
        if (id && !s) {
          const sandbox = await an.sandboxes.create({ agent: "test" });
          const thread = await an.threads.create({ sandboxId: sandbox.id, name: "browser session" });
          s = { sandboxId: sandbox.id, threadId: thread.id };
          sessions.set(id, s);
        }
        const messages = s.threadId
          ? (await an.threads.get({ sandboxId: s.sandboxId, threadId: s.threadId })).messages
          : [];
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ apiUrl: url, agent: "test", ...s, messages }));
      } else {
        res.writeHead(404).end();
      }
    } catch (e) {
      res.writeHead(500).end(String(e?.stack || e));
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  state.origin = `http://127.0.0.1:${server.address().port}`;
  state.server = server;
  state.sessions = sessions;
  return state;
}

before(async () => {
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox"] });
  other = await startOtherOrigin();
});

after(async () => {
  await browser?.close();
  other?.server.close();
});

test("a page on another origin chats straight with the daemon through createAnChat({apiUrl})", { timeout: 300_000 }, async () => {
  const { page, seen } = await newPage();
  let sandboxId = null;
  page.on("response", (r) => {
    if (r.url().startsWith(`${url}/v1/chat/test`) && r.request().method() === "POST") {
      sandboxId = r.headers()["x-sandbox-id"] ?? sandboxId;
    }
  });
  await page.goto(`${other.origin}/`);
  assert.notEqual(new URL(other.origin).port, new URL(url).port, "two origins");
  await until(page, "the chat rendered", () => document.querySelector(".an-root textarea"));
  await send(page, "hello from another origin");
  await until(page, "the scripted reply streamed in", textIn, "cross-origin reply");
  await until(page, "the turn ended", () => window.__chat?.status === "ready");
  assert.ok(sandboxId, "the chat's response named its sandbox");
  assert.ok(other.tokens.length >= 1, "the page fetched a token from its own origin's route");
  assert.deepEqual(seen.errors, [], "no errors in the page");
  const got = await api("GET", `/v1/sandboxes/${sandboxId}`);
  assert.equal(got.status, 200);
  assert.equal(got.body.agent.slug, "test");
  assert.equal((await api("DELETE", `/v1/sandboxes/${sandboxId}`)).status, 204);
  await page.close();
});

test("the seeds' session pattern: server makes sandbox and thread, the browser continues, a reload hydrates, a renewed token goes on", { timeout: 300_000 }, async () => {
  const { page, seen } = await newPage();
  await page.goto(`${other.origin}/?session=s1`);
  await until(page, "the chat rendered", () => document.querySelector(".an-root textarea"));
  const { sandboxId, threadId } = other.sessions.get("s1");
  await send(page, "first question");
  await until(page, "the first reply", textIn, "session reply one");
  await until(page, "the first turn ended", () => window.__chat?.status === "ready");
  const firstTokens = other.tokens.length;

  await page.reload();
  await until(page, "the reloaded page shows the thread's history", () =>
    document.body.innerText.includes("first question") && document.body.innerText.includes("session reply one"));
  await send(page, "second question");
  await until(page, "the second reply", textIn, "session reply two");
  await until(page, "the second turn ended", () => window.__chat?.status === "ready");
  assert.ok(other.tokens.length > firstTokens, "the reloaded page got a new token");
  assert.equal(new Set(other.tokens).size, other.tokens.length, "every token was a fresh one");

  const thread = await an.threads.get({ sandboxId, threadId });
  const texts = thread.messages.map((m) => `${m.role}: ${m.parts.filter((p) => p.type === "text").map((p) => p.text).join("")}`);
  assert.deepEqual(texts, [
    "user: first question",
    "assistant: session reply one",
    "user: second question",
    "assistant: session reply two",
  ]);
  const sandboxes = (await api("GET", "/v1/sandboxes")).body;
  assert.equal(sandboxes.filter((s) => s.agent.slug === "test").length, 1, "no second sandbox was made");
  assert.deepEqual(seen.errors, [], "no errors in the page");
  await an.sandboxes.delete(sandboxId);
  await page.close();
});

test("the console: sign in, agents, chat with the scripted model, a permission answered in the page, stop cancels on the server, a reload resumes", { timeout: 300_000 }, async () => {
  // Served from the binary with its types and a strict policy; no secret in it.
  const index = await fetch(`${url}/`);
  assert.equal(index.headers.get("content-type"), "text/html; charset=utf-8");
  const csp = index.headers.get("content-security-policy");
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self';/);
  assert.match(csp, /style-src 'self';/);
  assert.match(csp, /connect-src 'self';/);
  assert.match(csp, /frame-ancestors 'none'/);
  const html = await index.text();
  assert.ok(!html.includes(key) && html.includes('src="/console/app.js"'), html);
  assert.equal((await fetch(`${url}/console/app.js`)).headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.equal((await fetch(`${url}/console/app.css`)).headers.get("content-type"), "text/css; charset=utf-8");

  const { page, seen } = await newPage();
  await page.goto(`${url}/`);
  await until(page, "the sign-in form", () => document.querySelector("input#key"));
  await shot(page, "console-1-sign-in.png");
  await page.fill("input#key", "not-the-key");
  await page.click("button[type=submit]");
  await until(page, "a wrong key is refused", textIn, "not this daemon's API key");
  await page.fill("input#key", key);
  await page.click("button[type=submit]");
  await until(page, "the agents, with the skipped definition", () =>
    document.querySelector("tr[data-agent=asker]") && document.querySelector("tr[data-agent=broken]"));
  assert.match(await page.locator("tr[data-agent=broken]").innerText(), /not loaded/);
  assert.match(await page.locator("tr[data-agent=test]").innerText(), /agents directory/);
  await shot(page, "console-2-agents.png");

  // A chat with an agent that asks before tools.
  await page.locator("tr[data-agent=asker] button").click();
  await until(page, "the chat opened", () => location.hash.startsWith("#/chat/asker/") && document.querySelector(".an-root textarea"));
  const [, , , sandboxId, threadId] = new URL(page.url()).hash.split("/");
  await send(page, "write a file please");
  await until(page, "the permission request shows in the page", () => document.querySelector(".permission button"));
  assert.match(await page.locator(".permission").innerText(), /Bash/);
  await shot(page, "console-3-permission.png");
  await page.locator(".permission button", { hasText: "Allow once" }).click();
  await until(page, "the turn went on and ended", textIn, "asker done");
  await until(page, "the chat is ready again", () => document.querySelector(".conversation")?.dataset.status === "ready");
  const out = await api("POST", `/v1/sandboxes/${sandboxId}/exec`, { command: "cat ~/console.txt" });
  assert.equal(out.body.stdout, "from-console\n", "the allowed command ran");
  await shot(page, "console-4-chat.png");

  // Stop cancels the turn on the server, not only in this tab.
  await send(page, "tell me a long story");
  await until(page, "the slow reply started", textIn, "Once upon a time");
  // The send button turns into stop while streaming (it never stops animating, so it
  // is clicked without waiting for it to be still).
  await page.locator(".an-root div.cursor-pointer").last().dispatchEvent("click");
  const cancelled = await eventually("the server cancelled the turn", async () => {
    const t = await api("GET", `/v1/sandboxes/${sandboxId}/threads/${threadId}`);
    return t.body.status === "cancelled" && t.body;
  });
  assert.ok(!cancelled.messages.at(-1).parts.some((p) => p.text?.includes("The end.")), "the story was cut");
  await until(page, "the chat is ready after stop", () => document.querySelector(".conversation")?.dataset.status === "ready");

  // A reload in the middle of a turn hydrates the history from the thread and
  // resumes the turn where the stream is.
  await send(page, "another long story");
  await until(page, "the second story started", textIn, "Twice upon a time");
  await page.reload();
  await until(page, "the history after a reload", () =>
    document.body.innerText.includes("write a file please") && document.body.innerText.includes("asker done"));
  await until(page, "the resumed turn streamed to its end", textIn, "The second end.");
  const body = await page.locator("body").innerText();
  assert.equal(body.split("Twice upon a time").length - 1, 1, "the resumed reply shows once");
  await until(page, "the chat is ready after the resumed turn", () => document.querySelector(".conversation")?.dataset.status === "ready");
  await shot(page, "console-5-resumed.png");

  // The sandbox: threads with status and usage, files, a command.
  await page.goto(`${url}/#/sandboxes/${sandboxId}`);
  await until(page, "the sandbox's thread", (id) => document.querySelector(`tr[data-thread="${id}"]`), threadId);
  assert.match(await page.locator(`tr[data-thread="${threadId}"]`).innerText(), /completed/);
  await page.locator('button[data-path="/home/user/console.txt"]').click();
  await until(page, "the file's content", () => document.querySelector(".file-text")?.innerText.includes("from-console"));
  await page.fill("input[aria-label=command]", "echo hello-$((6*7))");
  await page.click(".command button[type=submit]");
  await until(page, "the command's output", textIn, "hello-42");
  await shot(page, "console-6-sandbox.png");

  // The thread's event log, with the permission asked and answered.
  await page.goto(`${url}/#/sandboxes/${sandboxId}/threads/${threadId}`);
  await until(page, "the event log", () =>
    document.querySelector("tr[data-update=permission_request]") && document.querySelector("tr[data-update=permission_resolved]"));
  await shot(page, "console-7-events.png");

  // The key is never in a URL or the page's source.
  assert.ok(seen.urls.length > 10, "requests were seen");
  assert.deepEqual(seen.urls.filter((u) => u.includes(key)), [], "no URL carries the key");
  assert.ok(!(await page.content()).includes(key), "the page's source does not hold the key");
  assert.deepEqual(seen.errors, [`401 GET ${url}/v1/agents`], "no errors in the page but the wrong key's");
  assert.equal((await api("DELETE", `/v1/sandboxes/${sandboxId}`)).status, 204);
  await page.close();
});
