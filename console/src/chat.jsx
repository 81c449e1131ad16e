// A chat with an agent, built with the official components: createAnChat and
// AnAgentChat from @21st-sdk/react, useChat from @ai-sdk/react. The thread's history
// is hydrated from GET …/threads/:id; a turn still running is resumed
// (useChat's resume, the relay's GET /v1/chat/:agent/:sandbox/stream); stop cancels
// the turn on the server (DELETE on that stream), not only in this tab.
import { useEffect, useState } from "react";
import { AnAgentChat, createAnChat } from "@21st-sdk/react";
import { useChat } from "@ai-sdk/react";
import { call, get, tokenFetcher } from "./api.js";
import { PermissionRequest } from "./permission.jsx";
import { Failure } from "./util.jsx";

export function ChatPage({ agent, sandboxId, threadId }) {
  const [chat, setChat] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let live = true;
    get(`/v1/sandboxes/${sandboxId}/threads/${threadId}`).then((thread) => {
      const created = createAnChat({
        agent,
        apiUrl: location.origin,
        // tokenUrl's fetcher posts only {agent}, without credentials: the console
        // mints its chat tokens itself, at the stock POST /v1/tokens.
        getToken: tokenFetcher(agent),
        sandboxId,
        threadId,
      });
      let messages = thread.messages || [];
      // The resumed stream replays the running turn from its start: its partial
      // message must not be there twice.
      if (thread.status === "streaming" && messages.at(-1)?.role === "assistant") {
        messages = messages.slice(0, -1);
      }
      created.messages = messages;
      if (live) setChat(created);
    }, setError);
    return () => {
      live = false;
    };
  }, [agent, sandboxId, threadId]);
  return (
    <main className="chat-page">
      <header className="chat-head">
        <span>Chat with <strong>{agent}</strong></span>
        <a href={`#/sandboxes/${sandboxId}`}>sandbox {sandboxId}</a>
        <a href={`#/sandboxes/${sandboxId}/threads/${threadId}`}>event log</a>
      </header>
      <Failure error={error} />
      {chat && <Conversation chat={chat} agent={agent} sandboxId={sandboxId} threadId={threadId} />}
    </main>
  );
}

function Conversation({ chat, agent, sandboxId, threadId }) {
  const { messages, sendMessage, status, stop, error } = useChat({ chat, resume: true });
  const [stopError, setStopError] = useState(null);
  async function onStop() {
    setStopError(null);
    try {
      // The server ends the turn and closes its streams with abort + finish.
      await call("DELETE", `/v1/chat/${encodeURIComponent(agent)}/${sandboxId}/stream`);
    } catch (e) {
      setStopError(e);
    }
    stop();
  }
  const pending = messages
    .flatMap((m) => m.parts || [])
    .filter((p) => p.type === "data-permission-request" && p.data?.status === "pending");
  return (
    <div className="conversation" data-status={status}>
      <div className="chat-box">
        <AnAgentChat
          messages={forDisplay(messages)}
          status={status}
          error={error}
          onSend={({ content }) => sendMessage({ text: content })}
          onStop={onStop}
          colorMode="light"
        />
      </div>
      {pending.map((p) => (
        <PermissionRequest key={p.data.requestId} sandboxId={sandboxId} threadId={threadId} request={p.data} />
      ))}
      <Failure error={stopError} />
    </div>
  );
}

/**
 * The components (0.1.4) draw tool calls only from AI SDK 4's `tool-invocation`
 * parts; the stream is AI SDK 5's (`dynamic-tool`, `tool-<name>`). Shows each tool
 * call in the shape they draw; the messages themselves are left as they are.
 */
function forDisplay(messages) {
  return messages.map((m) => {
    if (!m.parts?.some(isTool)) return m;
    return {
      ...m,
      parts: m.parts.map((p) =>
        isTool(p)
          ? {
              type: "tool-invocation",
              toolInvocation: {
                toolCallId: p.toolCallId,
                toolName: p.toolName ?? p.type.slice("tool-".length),
                args: p.input ?? {},
                state: p.state === "output-available" || p.state === "output-error" ? "result" : "call",
                // A command's card shows its output, not the whole result object.
                result: typeof p.output?.stdout === "string" ? `${p.output.stdout}${p.output.stderr ?? ""}` : (p.output ?? p.errorText),
              },
            }
          : p,
      ),
    };
  });
}

function isTool(part) {
  return part.type === "dynamic-tool" || (part.type.startsWith("tool-") && part.type !== "tool-invocation");
}
