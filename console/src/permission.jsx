// A permission request answered inline: once, always (this tool for the rest of the
// thread) or reject.
import { useState } from "react";
import { post } from "./api.js";

export function PermissionRequest({ sandboxId, threadId, request }) {
  const [sent, setSent] = useState(null);
  const [error, setError] = useState(null);
  async function answer(reply) {
    setError(null);
    try {
      await post(
        `/v1/sandboxes/${sandboxId}/threads/${threadId}/permissions/${request.requestId}`,
        { reply },
      );
      setSent(reply);
    } catch (e) {
      setError(e);
    }
  }
  return (
    <div className="permission" data-request={request.requestId}>
      <span>
        Allow <strong>{request.toolName}</strong>{" "}
        <code>{JSON.stringify(request.input)}</code>?
      </span>
      {sent ? (
        <em>answered: {sent}</em>
      ) : (
        <span className="buttons">
          <button onClick={() => answer("once")}>Allow once</button>
          <button onClick={() => answer("always")}>Always</button>
          <button className="danger" onClick={() => answer("reject")}>Reject</button>
        </span>
      )}
      {error && <span className="error">{error.message}</span>}
    </div>
  );
}
