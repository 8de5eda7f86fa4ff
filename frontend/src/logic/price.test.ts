import { describe, expect, it } from "vitest";
import { centsAsNumberText, costToCents, formatAmount, formatCents, parseQuantity, toCents, totalCents } from "./price";

describe("price computation", () => {
  it("reads decimal strings as cents", () => {
    expect(toCents("249.99")).toBe(24999);
    expect(toCents("89.5")).toBe(8950);
    expect(toCents("7")).toBe(700);
    expect(toCents("0.10")).toBe(10);
    for (const bad of ["", "-1.00", "1.999", "abc", "1e3", "1,00"]) expect(toCents(bad), bad).toBeNull();
  });

  it("multiplies without floating-point drift", () => {
    expect(totalCents("0.10", "3")).toBe(30); // 0.1 * 3 = 0.30000000000000004 in floats
    expect(totalCents("49.99", "3")).toBe(14997);
    expect(totalCents("999.99", "10000")).toBe(999990000);
    expect(formatCents(totalCents("0.10", "3"))).toBe("$0.30");
  });

  it("is zero without a product or with a bad quantity", () => {
    expect(totalCents(undefined, "2")).toBe(0);
    for (const bad of ["", "0", "0.9", "-1", "abc", "10001"]) {
      expect(totalCents("49.99", bad), bad).toBe(0);
    }
  });

  it("counts the truncated quantity", () => {
    expect(totalCents("49.99", "2.5")).toBe(9998);
    expect(totalCents("0.10", "3.99")).toBe(30);
  });

  it("accepts quantities from 1 to 10000, cutting off decimals", () => {
    expect(parseQuantity("1")).toBe(1);
    expect(parseQuantity(" 42 ")).toBe(42);
    expect(parseQuantity("10000")).toBe(10000);
    expect(parseQuantity("1.0")).toBe(1);
    expect(parseQuantity("2.5")).toBe(2);
    expect(parseQuantity("2.")).toBe(2);
    expect(parseQuantity("10000.9")).toBe(10000);
    expect(parseQuantity("1e3")).toBe(1000);
    expect(parseQuantity("+3")).toBe(3);
  });

  it("refuses quantities that truncate outside 1..10000, and what is not a number", () => {
    for (const bad of ["", " ", "0", "0.5", ".5", "-0.5", "-1", "10001", "1e5", "abc", "2abc", "0x10", "Infinity", "NaN", "1,5", "9".repeat(400)]) {
      expect(parseQuantity(bad), bad).toBeNull();
    }
  });

  it("writes cents as the plain number a number input holds", () => {
    expect(centsAsNumberText(0)).toBe("0");
    expect(centsAsNumberText(5)).toBe("0.05");
    expect(centsAsNumberText(14997)).toBe("149.97");
    expect(centsAsNumberText(14990)).toBe("149.9");
    expect(centsAsNumberText(30)).toBe("0.3"); // 0.1 * 3 in floats would show 0.30000000000000004
    expect(centsAsNumberText(999990000)).toBe("9999900");
  });

  it("reads a JSON cost, number or string, as cents", () => {
    expect(costToCents(49.99)).toBe(4999);
    expect(costToCents(0.1)).toBe(10);
    expect(costToCents(7)).toBe(700);
    expect(costToCents("249.99")).toBe(24999);
    for (const bad of [-1, 49.999, 1e21, 1e-7, Number.NaN, Infinity, "abc", "9".repeat(30), null, undefined, {}, []]) {
      expect(costToCents(bad), String(bad)).toBeNull();
    }
  });

  it("formats dollars with two decimals", () => {
    expect(formatCents(0)).toBe("$0.00");
    expect(formatCents(5)).toBe("$0.05");
    expect(formatCents(14997)).toBe("$149.97");
    expect(formatCents(123456789)).toBe("$1,234,567.89");
    expect(formatAmount("59.98")).toBe("$59.98");
    expect(formatAmount("59.9")).toBe("$59.90");
  });
});
