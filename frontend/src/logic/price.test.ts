import { describe, expect, it } from "vitest";
import { formatAmount, formatCents, parseQuantity, toCents, totalCents } from "./price";

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
    for (const bad of ["", "0", "-1", "2.5", "abc", "10001"]) {
      expect(totalCents("49.99", bad), bad).toBe(0);
    }
  });

  it("accepts whole quantities from 1 to 10000", () => {
    expect(parseQuantity("1")).toBe(1);
    expect(parseQuantity(" 42 ")).toBe(42);
    expect(parseQuantity("10000")).toBe(10000);
    expect(parseQuantity("10001")).toBeNull();
    expect(parseQuantity("1.0")).toBeNull();
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
