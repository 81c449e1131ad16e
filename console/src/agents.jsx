// Agents: each with where it came from (a file in the agents directory, or deployed
// through the API), the definitions skipped at start-up with why, and a way to chat.
import { useState } from "react";
import { get, post } from "./api.js";
import { Failure, useLoad } from "./util.jsx";

/** Creates a sandbox and thread for the console's user, then opens the chat. */
export async function startChat(agent) {
  const sandbox = await post("/v1/sandboxes", { agent, userId: "console" });
  const thread = await post(`/v1/sandboxes/${sandbox.id}/threads`, { name: "Console chat" });
  location.hash = `#/chat/${encodeURIComponent(agent)}/${sandbox.id}/${thread.id}`;
}

export function Agents() {
  const agents = useLoad(() => get("/v1/agents"), []);
  const problems = useLoad(() => get("/v1/agents/problems"), []);
  const [starting, setStarting] = useState(null);
  const [error, setError] = useState(null);
  const skipped = problems.data || [];
  const loaded = new Set((agents.data || []).map((a) => a.slug));
  async function chat(slug) {
    setStarting(slug);
    setError(null);
    try {
      await startChat(slug);
    } catch (e) {
      setError(e);
    } finally {
      setStarting(null);
    }
  }
  return (
    <main>
      <h2>Agents</h2>
      <Failure error={agents.error || error} />
      <table className="agents">
        <thead>
          <tr><th>Agent</th><th>Source</th><th>Model</th><th>Problems</th><th /></tr>
        </thead>
        <tbody>
          {(agents.data || []).map((a) => (
            <tr key={a.slug} data-agent={a.slug}>
              <td><strong>{a.name}</strong> <code>{a.slug}</code></td>
              <td>{a.source === "file" ? "agents directory" : "deployed (API)"}</td>
              <td>{a.definition?.model || "default"}</td>
              <td>{skipped.filter((p) => p.slug === a.slug).map((p) => `${p.path}: ${p.message}`).join("; ") || "none"}</td>
              <td>
                <button onClick={() => chat(a.slug)} disabled={starting !== null}>
                  {starting === a.slug ? "Starting a sandbox…" : "New chat"}
                </button>
              </td>
            </tr>
          ))}
          {skipped.filter((p) => !loaded.has(p.slug)).map((p) => (
            <tr key={p.path} className="skipped" data-agent={p.slug}>
              <td><code>{p.slug}</code></td>
              <td>{p.path}</td>
              <td>–</td>
              <td className="error">not loaded: {p.message}</td>
              <td />
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}

