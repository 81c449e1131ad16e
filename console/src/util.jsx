// Small shared pieces: loading data, showing errors, formatting.
import { useCallback, useEffect, useState } from "react";

/** Loads `load()` on mount and whenever `deps` change; `reload` runs it again. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const run = useCallback(() => {
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => setState({ data, error: null, loading: false }),
      (error) => setState({ data: null, error, loading: false }),
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  useEffect(run, [run]);
  return { ...state, reload: run };
}

export function Failure({ error }) {
  if (!error) return null;
  return <p className="error" role="alert">{error.message}</p>;
}

export function Status({ value }) {
  return <span className={`status status-${value}`}>{value}</span>;
}

export function usd(n) {
  return typeof n === "number" ? `$${n.toFixed(4)}` : "–";
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}
