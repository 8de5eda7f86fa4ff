import { useEffect, useState } from "react";
import { api } from "../api";
import type { Meta } from "../api";

/** Which colour and release answered this page load, so a person can see a switch. */
export function ServedBy() {
  const [meta, setMeta] = useState<Meta | null>(null);
  const [failed, setFailed] = useState(false);

  useEffect(() => {
    let current = true;
    api
      .meta()
      .then((answer) => current && setMeta(answer))
      .catch(() => current && setFailed(true));
    return () => {
      current = false;
    };
  }, []);

  const colour = meta?.colour ?? (failed ? "unknown" : "…");
  return (
    <footer className={`served-by colour-${meta?.colour ?? "unknown"}`}>
      <span className="dot" aria-hidden="true" />
      Served by <span data-testid="colour">{colour}</span> · release{" "}
      <span data-testid="release">{meta?.release ?? (failed ? "unknown" : "…")}</span>
    </footer>
  );
}
