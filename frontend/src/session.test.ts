import { describe, expect, it } from "vitest";
import { displayName, loadUser, saveUser, toUser } from "./session";

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
