import { describe, expect, it } from "vitest";
import { MAX_RECOMMENDATIONS, MAX_TEXT_LENGTH, parseRecommendations, shortText, toRecommendation } from "./recommendations";

const KEYBOARD = { id: 7, name: "Keyboard", cost: 49.99, sku: "KB-202" };

describe("reading the stored recommendations", () => {
  it("reads the sign-in answer's entries", () => {
    const stored = JSON.stringify([KEYBOARD, { id: 10, name: "Mouse", cost: 29.9, sku: "MS-505" }]);
    expect(parseRecommendations(stored)).toEqual([
      { id: 7, name: "Keyboard", costCents: 4999, sku: "KB-202" },
      { id: 10, name: "Mouse", costCents: 2990, sku: "MS-505" },
    ]);
  });

  it.each([null, "", "not json", "{", "null", "{}", '"str"', "5", "true", '{"0": {"name": "x"}}'])(
    "has none for %j",
    (stored) => {
      expect(parseRecommendations(stored)).toEqual([]);
    },
  );

  it("skips entries that are not objects with a name", () => {
    const stored = JSON.stringify([null, 1, "Keyboard", [], [KEYBOARD], true, {}, { name: 5 }, { name: "  " }, KEYBOARD]);
    expect(parseRecommendations(stored)).toEqual([{ id: 7, name: "Keyboard", costCents: 4999, sku: "KB-202" }]);
  });

  it("drops each wrong-typed field on its own", () => {
    expect(toRecommendation({ name: "Thing" })).toEqual({ id: null, name: "Thing", costCents: null, sku: null });
    expect(toRecommendation({ id: "7", name: "Thing", cost: "free", sku: 42 })).toEqual({
      id: null,
      name: "Thing",
      costCents: null,
      sku: null,
    });
    for (const id of [0, -3, 1.5, Number.MAX_SAFE_INTEGER + 2, null, true, {}]) {
      expect(toRecommendation({ id, name: "Thing" })?.id, String(id)).toBeNull();
    }
    for (const cost of [-1, 1e21, 49.999, Number.NaN, "1e3", null, [], { cents: 1 }]) {
      expect(toRecommendation({ name: "Thing", cost })?.costCents, String(cost)).toBeNull();
    }
    expect(toRecommendation({ name: "Thing", cost: "49.99" })?.costCents).toBe(4999);
    expect(toRecommendation({ name: "Thing", cost: 0 })?.costCents).toBe(0);
  });

  it("keeps markup as the plain text it is", () => {
    const name = "<img src=x onerror=alert(1)>";
    expect(parseRecommendations(JSON.stringify([{ ...KEYBOARD, name }]))[0]?.name).toBe(name);
  });

  it("cuts huge names and SKUs, without splitting a character", () => {
    const [entry] = parseRecommendations(JSON.stringify([{ ...KEYBOARD, name: "x".repeat(1_000_000), sku: "😀".repeat(500) }]));
    expect(Array.from(entry?.name ?? "")).toHaveLength(MAX_TEXT_LENGTH);
    expect(entry?.name.endsWith("x…")).toBe(true);
    expect(entry?.sku).toBe(`${"😀".repeat(MAX_TEXT_LENGTH - 1)}…`);
    expect(shortText("a".repeat(MAX_TEXT_LENGTH))).toBe("a".repeat(MAX_TEXT_LENGTH));
    expect(shortText("😀".repeat(MAX_TEXT_LENGTH))).toBe("😀".repeat(MAX_TEXT_LENGTH));
    expect(shortText("  Mouse \n")).toBe("Mouse");
  });

  it("shows at most the first valid entries of thousands", () => {
    const many = Array.from({ length: 5000 }, (_, i) => (i % 2 ? { ...KEYBOARD, id: i } : null));
    const shown = parseRecommendations(JSON.stringify(many));
    expect(shown).toHaveLength(MAX_RECOMMENDATIONS);
    expect(shown.map((r) => r.id)).toEqual([1, 3, 5, 7, 9]);
  });
});
