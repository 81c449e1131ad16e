// A thread: status and usage, its live event log (the SSE follower of
// …/events/stream, from the first event), and its pending permission requests.
import { useEffect, useState } from "react";
import { follow, get } from "./api.js";
import { PermissionRequest } from "./permission.jsx";
import { Failure, Status, usd, useLoad } from "./util.jsx";

export function ThreadPage({ sandboxId, threadId }) {
  const [events, setEvents] = useState([]);
  const [error, setError] = useState(null);
  const base = `/v1/sandboxes/${sandboxId}/threads/${threadId}`;
  const [version, setVersion] = useState(0);
  const thread = useLoad(() => get(base), [base, version]);
  useEffect(() => {
    const abort = new AbortController();
    follow(`${base}/events/stream?offset=0`, (event) => {
      setEvents((list) => [...list, event]);
      const kind = event.payload?.sessionUpdate;
      if (kind === "usage_update" || kind?.startsWith("permission_")) setVersion((v) => v + 1);
    }, abort.signal).catch((e) => {
      if (e.name !== "AbortError") setError(e);
    });
    return () => abort.abort();
  }, [base]);
  const resolved = new Set(
    events.filter((e) => e.payload?.sessionUpdate === "permission_resolved").map((e) => e.payload.requestId),
  );
  const pending = events
    .filter((e) => e.payload?.sessionUpdate === "permission_request" && !resolved.has(e.payload.requestId))
    .map((e) => e.payload);
  const t = thread.data;
  return (
    <main>
      <h2>
        Thread <code>{threadId}</code> {t && <Status value={t.status} />}
      </h2>
      <p>
        <a href={`#/sandboxes/${sandboxId}`}>sandbox {sandboxId}</a>
      </p>
      <Failure error={thread.error || error} />
      {t && (
        <p className="usage">
          {t.name} · {t.usage?.inputTokens ?? 0} in / {t.usage?.outputTokens ?? 0} out tokens ·{" "}
          {usd(t.usage?.totalCostUsd)} · {t.messages?.length ?? 0} messages
          {t.error && <span className="error"> · {t.error}</span>}
        </p>
      )}
      {pending.map((p) => (
        <PermissionRequest key={p.requestId} sandboxId={sandboxId} threadId={threadId} request={p} />
      ))}
      <h3>Events</h3>
      <table className="events">
        <thead><tr><th>#</th><th>At</th><th>Update</th><th>Detail</th></tr></thead>
        <tbody>
          {events.map((e) => (
            <tr key={e.seq} data-update={e.payload?.sessionUpdate}>
              <td>{e.seq}</td>
              <td>{new Date(e.at).toLocaleTimeString()}</td>
              <td>{e.payload?.sessionUpdate}</td>
              <td><code>{summary(e.payload)}</code></td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}

function summary(p) {
  if (!p) return "";
  const { sessionUpdate, ...rest } = p;
  if (rest.content?.text) return rest.content.text;
  const text = JSON.stringify(rest);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}
