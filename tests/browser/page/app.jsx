// A page of another origin (the test's own little server) that chats with the daemon
// straight from the browser, the way a customer's app uses the relay:
// createAnChat({agent, tokenUrl, apiUrl, sandboxId, threadId}) + AnAgentChat +
// useChat({chat, resume}). The token route and the session (sandbox + thread made by
// the server with the API key, history loaded by the server) are this origin's.
import { createRoot } from "react-dom/client";
import { useMemo } from "react";
import { AnAgentChat, createAnChat } from "@21st-sdk/react";
import { useChat } from "@ai-sdk/react";

const session = await (await fetch(`/api/session${location.search}`)).json();

function Page() {
  const chat = useMemo(() => {
    const created = createAnChat({
      agent: session.agent,
      tokenUrl: "/api/an-token",
      apiUrl: session.apiUrl,
      sandboxId: session.sandboxId,
      threadId: session.threadId,
    });
    created.messages = session.messages || [];
    return created;
  }, []);
  // Resume a running turn of the session's sandbox after a reload (no sandbox yet:
  // nothing to resume).
  const { messages, sendMessage, status, stop, error } = useChat({ chat, resume: Boolean(session.sandboxId) });
  window.__chat = { messages, status, error: error?.message };
  return (
    <div style={{ height: "100vh" }} data-status={status}>
      <AnAgentChat
        messages={messages}
        status={status}
        error={error}
        onSend={({ content }) => sendMessage({ text: content })}
        onStop={stop}
        colorMode="light"
      />
    </div>
  );
}

createRoot(document.getElementById("root")).render(<Page />);
