// The sandboxd web console: sign-in, then agents, chat, sandboxes and threads.
// Routes live in the hash (#/agents, #/chat/<agent>/<sandbox>/<thread>,
// #/sandboxes, #/sandboxes/<id>, #/sandboxes/<id>/threads/<thread>): ids only.
import { createRoot } from "react-dom/client";
import { useEffect, useState } from "react";
import { apiKey, get, signIn, signOut } from "./api.js";
import { Agents } from "./agents.jsx";
import { ChatPage } from "./chat.jsx";
import { SandboxList, SandboxPage } from "./sandboxes.jsx";
import { ThreadPage } from "./thread.jsx";

function useHash() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function SignIn({ onDone }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState(null);
  // A form without action or method: submitting never puts the key in a URL.
  async function submit(e) {
    e.preventDefault();
    setError(null);
    signIn(key.trim());
    try {
      await get("/v1/agents");
      setKey("");
      onDone();
    } catch (err) {
      signOut();
      setError(err.status === 401 ? "That is not this daemon's API key." : err.message);
    }
  }
  return (
    <main className="signin">
      <h1>sandboxd</h1>
      <form onSubmit={submit}>
        <label htmlFor="key">API key</label>
        <input id="key" type="password" autoComplete="off" value={key}
          onChange={(e) => setKey(e.target.value)} placeholder="sk_sbx_…" autoFocus />
        <button type="submit" disabled={!key.trim()}>Sign in</button>
        {error && <p className="error" role="alert">{error}</p>}
      </form>
      <p className="hint">
        Paste the key from <code>~/.local/share/sandboxd/api-key</code> (or your{" "}
        <code>SANDBOXD_API_KEY</code>). It stays in this tab only and is sent as a
        bearer header, never in a URL.
      </p>
    </main>
  );
}

function Page({ parts }) {
  const [view, ...rest] = parts;
  if (view === "chat" && rest.length >= 3) {
    return <ChatPage key={rest.join("/")} agent={rest[0]} sandboxId={rest[1]} threadId={rest[2]} />;
  }
  if (view === "sandboxes" && rest.length >= 3 && rest[1] === "threads") {
    return <ThreadPage key={rest.join("/")} sandboxId={rest[0]} threadId={rest[2]} />;
  }
  if (view === "sandboxes" && rest.length >= 1) return <SandboxPage key={rest[0]} id={rest[0]} />;
  if (view === "sandboxes") return <SandboxList />;
  return <Agents />;
}

function App() {
  const [signedIn, setSignedIn] = useState(Boolean(apiKey()));
  const hash = useHash();
  if (!signedIn) return <SignIn onDone={() => setSignedIn(true)} />;
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const here = parts[0] || "agents";
  return (
    <div className="shell">
      <nav>
        <strong>sandboxd</strong>
        <a href="#/agents" className={here === "agents" ? "on" : ""}>Agents</a>
        <a href="#/sandboxes" className={here === "sandboxes" ? "on" : ""}>Sandboxes</a>
        {here === "chat" && <a className="on">Chat</a>}
        <button className="link" onClick={() => { signOut(); setSignedIn(false); }}>Sign out</button>
      </nav>
      <Page parts={parts} />
    </div>
  );
}

createRoot(document.getElementById("root")).render(<App />);
