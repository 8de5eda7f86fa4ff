import { describe, expect, it } from "vitest";
import { isStrongPassword, passwordChecks } from "./password";

const met = (password: string) =>
  Object.fromEntries(passwordChecks(password).map(({ rule, met }) => [rule.id, met]));

describe("password rules", () => {
  it("reports each rule on its own", () => {
    expect(met("")).toEqual({ length: false, upper: false, lower: false, number: false });
    expect(met("abc")).toEqual({ length: false, upper: false, lower: true, number: false });
    expect(met("ABCDEFGH")).toEqual({ length: true, upper: true, lower: false, number: false });
    expect(met("Passw0rd")).toEqual({ length: true, upper: true, lower: true, number: true });
  });

  it("counts characters, not UTF-16 units, for the length", () => {
    expect(met("Aa1😀😀😀😀").length).toBe(false); // 7 characters, 11 code units
    expect(met("Aa1😀😀😀😀😀").length).toBe(true);
  });

  it("accepts letters beyond ASCII like the API does", () => {
    expect(isStrongPassword("Ünïcödé9")).toBe(true);
    expect(isStrongPassword("ünïcödé9")).toBe(false);
  });

  it("needs all four", () => {
    for (const weak of ["Short1A", "alllowercase1", "ALLUPPERCASE1", "NoDigitsHere", "12345678"]) {
      expect(isStrongPassword(weak), weak).toBe(false);
    }
    expect(isStrongPassword("Passw0rdX")).toBe(true);
  });
});
