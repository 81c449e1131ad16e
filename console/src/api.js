// The daemon's /v1 API from the console. The API key lives only in this tab's
// sessionStorage (gone when the tab closes) and travels only in the Authorization
// header of same-origin requests: never in a URL, the page's source or a log.

const KEY = "sandboxd.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function signIn(key) {
  sessionStorage.setItem(KEY, key);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  tokens.clear();
}

/** An error of the API, with its code and status. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = body && body.error;
    const message = typeof error === "string" ? error : error?.message;
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = typeof error === "string" ? body.code : error?.code;
  }
}

export async function call(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: {
      Authorization: `Bearer ${apiKey()}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body ?? {});

// Chat tokens for the console's chat, minted by the stock POST /v1/tokens (the same
// route exchangeToken uses) and cached until a minute before they expire.
const tokens = new Map();

export function tokenFetcher(agent) {
  return async () => {
    const cached = tokens.get(agent);
    if (cached && cached.expiresAt > Date.now() + 60_000) return cached.token;
    const { token, expiresAt } = await post("/v1/tokens", {
      agents: [agent],
      userId: "console",
      expiresIn: "1h",
    });
    tokens.set(agent, { token, expiresAt: Date.parse(expiresAt) });
    return token;
  };
}

/**
 * Follows an SSE endpoint with the bearer header (EventSource cannot send one);
 * calls onEvent with each parsed `data:` payload until signal aborts.
 */
export async function follow(path, onEvent, signal) {
  const res = await fetch(path, {
    headers: { Authorization: `Bearer ${apiKey()}` },
    signal,
  });
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n");
      if (data) {
        try {
          onEvent(JSON.parse(data));
        } catch {
          // Not JSON (a comment or keep-alive): nothing to show.
        }
      }
    }
  }
}
