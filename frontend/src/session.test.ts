import { afterEach, describe, expect, it, vi } from "vitest";
import {
  RECOMMENDATIONS_KEY,
  clearSession,
  displayName,
  loadRecommendations,
  loadUser,
  saveRecommendations,
  saveUser,
  toUser,
} from "./session";

afterEach(() => vi.restoreAllMocks());

/** Makes localStorage (not sessionStorage: they share Storage.prototype) throw on ``method``. */
function breakLocalStorage(method: "getItem" | "setItem" | "removeItem") {
  const original = Storage.prototype[method] as (...args: unknown[]) => unknown;
  vi.spyOn(Storage.prototype, method).mockImplementation(function (this: Storage, ...args: unknown[]) {
    if (this === localStorage) throw new DOMException("refused", "SecurityError");
    return original.apply(this, args);
  } as never);
}

describe("the stored user", () => {
  it("needs only a string username; other fields are kept when well typed", () => {
    expect(toUser({ username: "ada" })).toEqual({ username: "ada" });
    expect(toUser({ username: "ada", id: "7", email: 5, fullName: null })).toEqual({ username: "ada" });
    expect(toUser({ id: 7, username: "ada", email: "a@example.com", fullName: "Ada", extra: 1 })).toEqual({
      id: 7,
      username: "ada",
      email: "a@example.com",
      fullName: "Ada",
    });
    for (const bad of [null, [], "str", 5, { username: 5 }, { fullName: "Ada" }, [{ username: "ada" }]]) {
      expect(toUser(bad), JSON.stringify(bad)).toBeNull();
    }
  });

  it.each(["not json", "[]", '"str"', '{"username": 5}', "null", "{"])("is nobody for %j", (stored) => {
    sessionStorage.setItem("user", stored);
    expect(loadUser()).toBeNull();
  });

  it("reads a username-only user", () => {
    sessionStorage.setItem("user", '{"username": "ada"}');
    expect(loadUser()).toEqual({ username: "ada" });
  });

  it("greets by full name, else by username", () => {
    expect(displayName({ username: "ada", fullName: "Ada Lovelace" })).toBe("Ada Lovelace");
    expect(displayName({ username: "ada" })).toBe("ada");
    expect(displayName({ username: "ada", fullName: "  " })).toBe("ada");
  });

  it("stores the four public fields", () => {
    saveUser({ id: 7, username: "ada", email: "a@example.com", fullName: "Ada" });
    expect(JSON.parse(sessionStorage.getItem("user") ?? "null")).toEqual({
      id: 7,
      username: "ada",
      email: "a@example.com",
      fullName: "Ada",
    });
  });
});

describe("the stored recommendations", () => {
  const LIST = [{ id: 7, name: "Keyboard", cost: 49.99, sku: "KB-202" }];

  it("keeps an array as it came and reads it back", () => {
    saveRecommendations(LIST);
    expect(JSON.parse(localStorage.getItem(RECOMMENDATIONS_KEY) ?? "null")).toEqual(LIST);
    expect(loadRecommendations()).toEqual([{ id: 7, name: "Keyboard", costCents: 4999, sku: "KB-202" }]);
    saveRecommendations([]);
    expect(localStorage.getItem(RECOMMENDATIONS_KEY)).toBe("[]");
  });

  it.each([undefined, null, "x", { 0: LIST[0] }, 5])("removes what was kept when the answer has %j", (answer) => {
    saveRecommendations(LIST);
    saveRecommendations(answer);
    expect(localStorage.getItem(RECOMMENDATIONS_KEY)).toBeNull();
  });

  it("removes an earlier list when the new one does not fit", () => {
    saveRecommendations(LIST);
    breakLocalStorage("setItem");
    saveRecommendations([{ id: 1, name: "Other" }]);
    expect(localStorage.getItem(RECOMMENDATIONS_KEY)).toBeNull();
  });

  it("has none when storage cannot be read, and never throws", () => {
    localStorage.setItem(RECOMMENDATIONS_KEY, JSON.stringify(LIST));
    breakLocalStorage("getItem");
    expect(loadRecommendations()).toEqual([]);
    breakLocalStorage("removeItem");
    expect(() => saveRecommendations(null)).not.toThrow();
    expect(() => clearSession()).not.toThrow();
  });

  it("is cleared with the session", () => {
    saveUser({ username: "ada" });
    saveRecommendations(LIST);
    clearSession();
    expect(sessionStorage.length).toBe(0);
    expect(localStorage.getItem(RECOMMENDATIONS_KEY)).toBeNull();
  });
});
