/** The signed-in user's public fields, kept for the tab's life (the session itself is the
 * gateway's HttpOnly cookie, which scripts cannot read). */
export interface User {
  id: number;
  username: string;
  email: string;
  fullName: string;
}

const KEY = "user";

function isUser(value: unknown): value is User {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.id === "number" &&
    typeof v.username === "string" &&
    typeof v.email === "string" &&
    typeof v.fullName === "string"
  );
}

export function loadUser(): User | null {
  try {
    const parsed: unknown = JSON.parse(sessionStorage.getItem(KEY) ?? "null");
    return isUser(parsed) ? parsed : null;
  } catch {
    return null;
  }
}

export function saveUser(user: User): void {
  const { id, username, email, fullName } = user;
  sessionStorage.setItem(KEY, JSON.stringify({ id, username, email, fullName }));
}

export function clearSession(): void {
  sessionStorage.clear();
}
