import { describe, expect, it } from "vitest";
import { normaliseEmail, registrationErrors } from "./validation";

const GOOD = {
  username: "ada_lovelace",
  email: "Ada@Example.com ",
  fullName: "Ada O'Brien-Byron Jr.",
  password: "Passw0rdX",
  confirmPassword: "Passw0rdX",
};

describe("registration checks (the API's rules)", () => {
  it("accepts a good form", () => {
    expect(registrationErrors(GOOD)).toEqual([]);
    expect(registrationErrors({ ...GOOD, fullName: "José Ünal-Ødegård" })).toEqual([]);
  });

  it("reports every failing field at once", () => {
    const errors = registrationErrors({
      username: "ab",
      email: "nope",
      fullName: "",
      password: "short",
      confirmPassword: "other",
    });
    expect(errors).toHaveLength(5);
  });

  it.each(["ab", "a".repeat(51), "has space", "dash-name", "émile"])("refuses username %j", (username) => {
    expect(registrationErrors({ ...GOOD, username })[0]).toMatch(/^Username/);
  });

  it.each(["plain", "a@b", "a@b.c", "a..b@example.com", "a@-x.com", `${"x".repeat(250)}@example.com`])(
    "refuses email %j",
    (email) => {
      expect(registrationErrors({ ...GOOD, email })).toEqual(["Email must be a valid address"]);
    },
  );

  it.each(["", "   ", "<script>alert(1)</script>", "Name!", "semi;colon", "Tab\tName", "a_b", "A".repeat(256)])(
    "refuses full name %j",
    (fullName) => {
      expect(registrationErrors({ ...GOOD, fullName })[0]).toMatch(/^Full name/);
    },
  );

  it("wants the two passwords equal", () => {
    expect(registrationErrors({ ...GOOD, confirmPassword: "Passw0rdY" })).toEqual(["Passwords do not match"]);
  });

  it("trims and lower-cases the email", () => {
    expect(normaliseEmail("  Ada@Example.COM ")).toBe("ada@example.com");
  });
});
