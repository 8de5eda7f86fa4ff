/** The gateway's API on the same origin. Every failure becomes an ApiError with a message a
 * person can read; a 401 anywhere but the login call itself ends the session. */
import type { User } from "./session";
import type { Order } from "./logic/sortOrders";

export interface Product {
  id: number;
  name: string;
  cost: string;
  sku: string;
}

export interface Meta {
  colour: string;
  release: string;
  version: string;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    /** A validation failure's messages, one per field problem (``details[].msg``). */
    readonly details: readonly string[] = [],
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** What to show: the validation messages as a list, else the one message. */
  get messages(): string[] {
    return this.details.length > 0 ? [...this.details] : [this.message];
  }
}

type Unauthorised = () => void;
let onUnauthorised: Unauthorised = () => {};

/** Called on any 401 (except a failed login): the app signs the user out. */
export function setUnauthorisedHandler(handler: Unauthorised): void {
  onUnauthorised = handler;
}

interface ErrorBody {
  error?: string;
  message?: string;
  details?: { msg?: string }[];
}

function detailsOf(body: ErrorBody | null): string[] {
  if (!Array.isArray(body?.details)) return [];
  return body.details.map((d) => (typeof d?.msg === "string" && d.msg ? d.msg : "Invalid value"));
}

/** The text a person reads for a failed call: the validation messages, else ``message``,
 * else ``error``, else a sentence for the status. */
export function messageOf(body: ErrorBody | null, status: number): string {
  const details = detailsOf(body);
  if (details.length > 0) return details.join(". ");
  if (body?.message) return body.message;
  if (body?.error) return body.error;
  return status >= 500 ? "The service is unavailable; please try again" : `Request failed (${status})`;
}

async function request<T>(
  method: "GET" | "POST",
  path: string,
  body?: unknown,
  options: { signOutOn401?: boolean } = {},
): Promise<T> {
  let response: Response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      credentials: "same-origin",
      // A content type only where there is content: a GET has no body to describe.
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("Cannot reach the server; check your connection and try again", 0);
  }
  let parsed: unknown = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    if (response.status === 401 && options.signOutOn401 !== false) onUnauthorised();
    const error = (typeof parsed === "object" ? parsed : null) as ErrorBody | null;
    throw new ApiError(messageOf(error, response.status), response.status, detailsOf(error));
  }
  return parsed as T;
}

interface AuthAnswer {
  user: User;
  /** Products to suggest on the order page; unchecked here (older gateways leave it out):
   * session.ts keeps only an array, and the page parses it defensively. */
  recommendedProducts?: unknown;
}

export const api = {
  login: (username: string, password: string) =>
    request<AuthAnswer>("POST", "/auth/login", { username, password }, { signOutOn401: false }),
  register: (form: { username: string; email: string; fullName: string; password: string }) =>
    request<AuthAnswer>("POST", "/auth/register", form),
  logout: () => request<unknown>("POST", "/auth/logout", {}, { signOutOn401: false }),
  products: () => request<{ products: Product[] }>("GET", "/products?limit=200"),
  /** Not used by the page, which shows what the sign-in answer left in localStorage. */
  recommended: () => request<{ recommendedProducts: unknown }>("GET", "/products/recommended"),
  placeOrder: (productId: number, quantity: number) =>
    request<{ messageId: string }>("POST", "/orders", { productId, quantity }),
  orders: () => request<{ orders: Order[] }>("GET", "/orders"),
  meta: () => request<Meta>("GET", "/meta", undefined, { signOutOn401: false }),
};
