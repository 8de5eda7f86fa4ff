import { afterEach, describe, expect, it, vi } from "vitest";
import { api, ApiError, messageOf, setUnauthorisedHandler } from "./api";
import { mockFetch, validationFailure } from "./test-helpers";

afterEach(() => {
  vi.unstubAllGlobals();
  setUnauthorisedHandler(() => {});
});

async function failure(call: Promise<unknown>): Promise<ApiError> {
  const caught: unknown = await call.then(
    () => null,
    (e: unknown) => e,
  );
  expect(caught).toBeInstanceOf(ApiError);
  return caught as ApiError;
}

describe("the API wrapper", () => {
  it("calls relative /api/v1 paths on the same origin, typing only bodies as JSON", async () => {
    const fetch = mockFetch(() => ({ body: { success: true, orders: [], count: 0 } }));
    await api.orders();
    await api.placeOrder(3, 2);
    const [getUrl, getInit] = fetch.mock.calls[0]!;
    expect(getUrl).toBe("/api/v1/orders");
    expect(getInit).toMatchObject({ method: "GET", credentials: "same-origin", headers: {} });
    const [postUrl, postInit] = fetch.mock.calls[1]!;
    expect(postUrl).toBe("/api/v1/orders");
    expect(postInit).toMatchObject({
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
    });
    expect(JSON.parse(String(postInit?.body))).toEqual({ productId: 3, quantity: 2 });
  });

  it("asks for the recommended products at their path", async () => {
    const fetch = mockFetch(() => ({ body: { success: true, recommendedProducts: [] } }));
    expect(await api.recommended()).toEqual({ success: true, recommendedProducts: [] });
    expect(fetch.mock.calls[0]?.[0]).toBe("/api/v1/products/recommended");
    expect(fetch.mock.calls[0]?.[1]).toMatchObject({ method: "GET" });
  });

  it("turns a validation failure into its list of messages", async () => {
    mockFetch(() =>
      validationFailure({ email: "Email must be a valid address", password: "Password is too weak" }),
    );
    const error = await failure(api.register({ username: "a", email: "b", fullName: "c", password: "d" }));
    expect(error.status).toBe(400);
    expect(error.messages).toEqual(["Email must be a valid address", "Password is too weak"]);
  });

  it("prefers message over error, and has a sentence when the body says nothing", () => {
    expect(messageOf({ error: "Service Unavailable", message: "Database is down" }, 503)).toBe("Database is down");
    expect(messageOf({ error: "Not Found" }, 404)).toBe("Not Found");
    expect(messageOf(null, 502)).toMatch(/unavailable/);
    expect(messageOf(null, 418)).toBe("Request failed (418)");
  });

  it("explains a network failure in words", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => Promise.reject(new TypeError("Failed to fetch"))));
    const error = await failure(api.products());
    expect(error.status).toBe(0);
    expect(error.message).toMatch(/Cannot reach the server/);
  });

  it("reports a 401 everywhere except on the login call", async () => {
    const handler = vi.fn();
    setUnauthorisedHandler(handler);
    mockFetch(() => ({ status: 401, body: { error: "Authentication failed", message: "Invalid username or password" } }));
    const login = await failure(api.login("ada", "nope"));
    expect(login.message).toBe("Invalid username or password");
    expect(handler).not.toHaveBeenCalled();
    await failure(api.orders());
    expect(handler).toHaveBeenCalledTimes(1);
  });
});
