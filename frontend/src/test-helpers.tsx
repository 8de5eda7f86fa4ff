import { render } from "@testing-library/react";
import { MemoryRouter, Route, Routes } from "react-router-dom";
import { vi } from "vitest";
import { AppRoutes } from "./App";
import { AuthProvider } from "./auth";
import { saveUser } from "./session";

export const ADA = { id: 7, username: "ada", email: "ada@example.com", fullName: "Ada Lovelace" };

export const PRODUCTS = [
  { id: 7, name: "Keyboard", cost: "49.99", sku: "KB-202" },
  { id: 1, name: "Quantum Stabilizer", cost: "249.99", sku: "QS-001" },
  { id: 10, name: "Mouse", cost: "29.99", sku: "MS-505" },
];

type Handler = (url: string, init: RequestInit) => { status?: number; body: unknown };

/** fetch answered by ``handler``; returns the mock so tests can read the calls. */
export function mockFetch(handler: Handler) {
  const fake = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const { status = 200, body } = handler(String(input), init);
    return new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": "application/json" },
    });
  });
  vi.stubGlobal("fetch", fake);
  return fake;
}

/** The app's routes at ``path``, signed in as Ada unless told otherwise; a probe route
 * shows where navigation went. */
export function renderApp(path: string, signedIn = true) {
  if (signedIn) saveUser(ADA);
  return render(
    <MemoryRouter initialEntries={[path]}>
      <AuthProvider>
        <Routes>
          <Route path="/*" element={<AppRoutes />} />
        </Routes>
      </AuthProvider>
    </MemoryRouter>,
  );
}

/** A 400 as the gateway sends it for failing fields: one ``details`` entry per field. */
export function validationFailure(fields: Record<string, string>) {
  return {
    status: 400,
    body: {
      error: "Validation failed",
      details: Object.entries(fields).map(([path, msg]) => ({ type: "field", path, msg, location: "body" })),
    },
  };
}
