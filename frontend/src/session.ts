/** What the tab keeps about the signed-in user: their public fields in sessionStorage (for
 * the tab's life) and their recommended products in localStorage. The session itself is the
 * gateway's HttpOnly cookie, which scripts cannot read: it stays the authority, and any 401
 * clears all of this. Storage is read as untrusted and may itself throw (disabled storage,
 * a full quota), so every access is guarded. */
import { parseRecommendations } from "./logic/recommendations";
import type { Recommendation } from "./logic/recommendations";

/** Only the username is required: the page counts a stored user as signed in with just that,
 * as the reference does, and every other field may be missing. */
export interface User {
  username: string;
  id?: number;
  email?: string;
  fullName?: string;
}

const USER_KEY = "user";
export const RECOMMENDATIONS_KEY = "recommendedProducts";

/** A stored value as a User: any JSON object with a string username; the other fields are
 * kept only when they have the right type. */
export function toUser(value: unknown): User | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const v = value as Record<string, unknown>;
  if (typeof v.username !== "string") return null;
  const user: User = { username: v.username };
  if (typeof v.id === "number") user.id = v.id;
  if (typeof v.email === "string") user.email = v.email;
  if (typeof v.fullName === "string") user.fullName = v.fullName;
  return user;
}

/** The name the page greets: the full name, else the username. */
export function displayName(user: User): string {
  return user.fullName?.trim() ? user.fullName : user.username;
}

export function loadUser(): User | null {
  try {
    return toUser(JSON.parse(sessionStorage.getItem(USER_KEY) ?? "null"));
  } catch {
    return null;
  }
}

export function saveUser(user: User): void {
  const { id, username, email, fullName } = user;
  try {
    sessionStorage.setItem(USER_KEY, JSON.stringify({ id, username, email, fullName }));
  } catch {
    // Storage refused: signed in for this page's life only; the cookie still holds.
  }
}

export function loadRecommendations(): Recommendation[] {
  try {
    return parseRecommendations(localStorage.getItem(RECOMMENDATIONS_KEY));
  } catch {
    return [];
  }
}

function forgetRecommendations(): void {
  try {
    localStorage.removeItem(RECOMMENDATIONS_KEY);
  } catch {
    // Storage unavailable: there is nothing stored to forget.
  }
}

/** Keeps a sign-in answer's recommendedProducts as it came (the page parses it when it
 * reads it); anything but an array removes what an earlier sign-in left. */
export function saveRecommendations(recommendations: unknown): void {
  if (!Array.isArray(recommendations)) {
    forgetRecommendations();
    return;
  }
  try {
    localStorage.setItem(RECOMMENDATIONS_KEY, JSON.stringify(recommendations));
  } catch {
    // A full quota: better none than an earlier user's list.
    forgetRecommendations();
  }
}

export function clearSession(): void {
  try {
    sessionStorage.clear();
  } catch {
    // Storage unavailable: nothing was kept there.
  }
  forgetRecommendations();
}
