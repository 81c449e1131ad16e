// Sandboxes: the list, and one sandbox with its threads (status, usage), its files
// (browse, read) and a command box.
import { useState } from "react";
import { call, get, post } from "./api.js";
import { Failure, Status, usd, useLoad, when } from "./util.jsx";

export function SandboxList() {
  const list = useLoad(() => get("/v1/sandboxes"), []);
  return (
    <main>
      <h2>Sandboxes <button className="link" onClick={list.reload}>refresh</button></h2>
      <Failure error={list.error} />
      <table className="sandboxes">
        <thead><tr><th>Sandbox</th><th>Agent</th><th>Status</th><th>Created</th></tr></thead>
        <tbody>
          {(list.data || []).map((s) => (
            <tr key={s.id} data-sandbox={s.id}>
              <td><a href={`#/sandboxes/${s.id}`}><code>{s.id}</code></a></td>
              <td>{s.agent?.slug}</td>
              <td><Status value={s.status} />{s.error && <span className="error"> {s.error}</span>}</td>
              <td>{when(s.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {list.data?.length === 0 && <p>No sandboxes yet: start a chat from Agents.</p>}
    </main>
  );
}

export function SandboxPage({ id }) {
  const sandbox = useLoad(() => get(`/v1/sandboxes/${id}`), [id]);
  const threads = useLoad(() => threadDetails(id), [id]);
  const s = sandbox.data;
  const u = s?.modelUsage;
  async function remove() {
    if (!confirm(`Delete sandbox ${id}?`)) return;
    await call("DELETE", `/v1/sandboxes/${id}`);
    location.hash = "#/sandboxes";
  }
  return (
    <main>
      <h2>
        Sandbox <code>{id}</code> {s && <Status value={s.status} />}{" "}
        <button className="link" onClick={() => { sandbox.reload(); threads.reload(); }}>refresh</button>
        <button className="link danger" onClick={remove}>delete</button>
      </h2>
      <Failure error={sandbox.error} />
      {s && (
        <p className="usage">
          agent <strong>{s.agent?.slug}</strong> · created {when(s.createdAt)} · model usage:{" "}
          {u ? `${u.requests} requests, ${u.inputTokens} in / ${u.outputTokens} out tokens, ${usd(u.costUsd)}` : "none"}
          {s.error && <span className="error"> · {s.error}</span>}
        </p>
      )}
      <h3>Threads</h3>
      <Failure error={threads.error} />
      <table className="threads">
        <thead><tr><th>Thread</th><th>Status</th><th>Usage</th><th>Updated</th><th /></tr></thead>
        <tbody>
          {(threads.data || []).map((t) => (
            <tr key={t.id} data-thread={t.id}>
              <td>{t.name} <code>{t.id}</code></td>
              <td><Status value={t.status} />{t.error && <span className="error"> {t.error}</span>}</td>
              <td>{t.usage ? `${t.usage.inputTokens} in / ${t.usage.outputTokens} out · ${usd(t.usage.totalCostUsd)}` : "–"}</td>
              <td>{when(t.updatedAt)}</td>
              <td>
                <a href={`#/sandboxes/${id}/threads/${t.id}`}>events</a>{" · "}
                {s && <a href={`#/chat/${encodeURIComponent(s.agent?.slug)}/${id}/${t.id}`}>chat</a>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {s?.status === "active" && (
        <>
          <Files id={id} />
          <Command id={id} />
        </>
      )}
    </main>
  );
}

/** Every thread of a sandbox with its status and usage. */
async function threadDetails(id) {
  const list = await get(`/v1/sandboxes/${id}/threads`);
  return Promise.all(list.map((t) => get(`/v1/sandboxes/${id}/threads/${t.id}`)));
}

function Files({ id }) {
  const [dir, setDir] = useState("/home/user");
  const [file, setFile] = useState(null);
  const listing = useLoad(() => get(`/v1/sandboxes/${id}/files/list?path=${encodeURIComponent(dir)}`), [id, dir]);
  async function open(entry) {
    if (entry.type === "dir") {
      setFile(null);
      setDir(entry.path);
      return;
    }
    try {
      const got = await get(`/v1/sandboxes/${id}/files?path=${encodeURIComponent(entry.path)}`);
      setFile({ path: entry.path, text: got.encoding === "base64" ? "(binary file)" : got.content });
    } catch (e) {
      setFile({ path: entry.path, error: e });
    }
  }
  const parent = dir.replace(/\/[^/]+\/?$/, "") || "/";
  const entries = [...(listing.data || [])].sort((a, b) =>
    (a.type === "dir" ? 0 : 1) - (b.type === "dir" ? 0 : 1) || a.name.localeCompare(b.name));
  return (
    <section className="files">
      <h3>Files <code>{dir}</code></h3>
      <Failure error={listing.error} />
      <div className="split">
        <ul className="listing">
          {dir !== "/" && <li><button className="link" onClick={() => setDir(parent)}>..</button></li>}
          {entries.map((e) => (
            <li key={e.path}>
              <button className="link" data-path={e.path} onClick={() => open(e)}>
                {e.name}{e.type === "dir" ? "/" : ""}
              </button>{" "}
              <small>{e.type === "dir" ? "" : `${e.size} B`}</small>
            </li>
          ))}
        </ul>
        {file && (
          <div className="viewer">
            <strong>{file.path}</strong>
            {file.error ? <Failure error={file.error} /> : <pre className="file-text">{file.text}</pre>}
          </div>
        )}
      </div>
    </section>
  );
}

function Command({ id }) {
  const [command, setCommand] = useState("");
  const [result, setResult] = useState(null);
  const [running, setRunning] = useState(false);
  async function run(e) {
    e.preventDefault();
    setRunning(true);
    try {
      setResult(await post(`/v1/sandboxes/${id}/exec`, { command, timeoutMs: 60_000 }));
    } catch (err) {
      setResult({ error: err.message });
    } finally {
      setRunning(false);
    }
  }
  return (
    <section className="command">
      <h3>Command</h3>
      <form onSubmit={run}>
        <input value={command} onChange={(e) => setCommand(e.target.value)}
          placeholder="ls -la" aria-label="command" />
        <button type="submit" disabled={running || !command.trim()}>{running ? "Running…" : "Run"}</button>
      </form>
      {result && (
        <pre className="output" data-exit={result.exitCode}>
          {result.error ?? `${result.stdout}${result.stderr}\n[exit ${result.exitCode}${result.timedOut ? ", timed out" : ""}]`}
        </pre>
      )}
    </section>
  );
}
