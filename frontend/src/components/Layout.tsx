import type { ReactNode } from "react";
import { useAuth } from "../auth";
import { displayName } from "../session";

/** A signed-in page: the title, who is signed in, and the way out. */
export function SignedInLayout({ title, children }: { title: string; children: ReactNode }) {
  const { user, signOut } = useAuth();
  return (
    <main className="card wide">
      <header className="page-header">
        <h1>{title}</h1>
        <div className="who">
          <span>Logged in as: {user ? displayName(user) : ""}</span>
          <button type="button" className="secondary" onClick={() => void signOut()}>
            Logout
          </button>
        </div>
      </header>
      {children}
    </main>
  );
}

export function Alert({ messages }: { messages: string[] }) {
  if (messages.length === 0) return null;
  return (
    <div role="alert" className="alert">
      {messages.length === 1 ? (
        messages[0]
      ) : (
        <ul>
          {messages.map((m, i) => (
            <li key={`${i}:${m}`}>{m}</li>
          ))}
        </ul>
      )}
    </div>
  );
}
