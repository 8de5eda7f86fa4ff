/** Money as integer cents, so that 0.1 × 3 is 0.30 and never 0.30000000000000004. */

/** "249.99" -> 24999; null for anything that is not a non-negative amount with ≤ 2 decimals. */
export function toCents(amount: string): number | null {
  const match = /^(\d+)(?:\.(\d{1,2}))?$/.exec(amount.trim());
  if (!match) return null;
  const whole = Number(match[1]);
  const fraction = Number((match[2] ?? "").padEnd(2, "0"));
  return whole * 100 + fraction;
}

/** What a number input may hold: digits with an optional fraction and exponent ("2.5",
 * ".5", "1e3"); not "0x10" or "Infinity", which Number() would also read. */
const DECIMAL_NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/i;

/** The whole number of items a quantity field means, 1 to 10000 (the API's range), else
 * null. Decimals are cut off as the reference page does (2.5 orders 2, 0.5 is refused):
 * the API itself still refuses anything but an integer. */
export function parseQuantity(value: string): number | null {
  const text = value.trim();
  if (!DECIMAL_NUMBER.test(text)) return null;
  const quantity = Math.trunc(Number(text));
  return quantity >= 1 && quantity <= 10_000 ? quantity : null;
}

/** cost × quantity in cents; 0 when either is missing or invalid. */
export function totalCents(cost: string | undefined, quantity: string): number {
  const cents = cost === undefined ? null : toCents(cost);
  const count = parseQuantity(quantity);
  return cents === null || count === null ? 0 : cents * count;
}

/** A cost as JSON may carry it (49.99 or "49.99") in cents; null for anything else: more
 * than two decimals, negative, not finite, or too large to count exactly in cents. */
export function costToCents(cost: unknown): number | null {
  const text = typeof cost === "number" ? String(cost) : typeof cost === "string" ? cost : null;
  if (text === null || text.length > 24) return null;
  const cents = toCents(text);
  return cents !== null && Number.isSafeInteger(cents) ? cents : null;
}

/** 14997 -> "149.97", 14990 -> "149.9", 0 -> "0": the amount as the plain number an
 * <input type="number"> holds (what String() of the reference's number gives), written
 * from whole cents so that no float drift can show. */
export function centsAsNumberText(cents: number): string {
  const whole = Math.floor(cents / 100);
  const fraction = String(cents % 100).padStart(2, "0").replace(/0+$/, "");
  return fraction ? `${whole}.${fraction}` : String(whole);
}

/** 14997 -> "$149.97", with thousands separators. */
export function formatCents(cents: number): string {
  const whole = Math.floor(cents / 100).toLocaleString("en-US");
  return `$${whole}.${String(cents % 100).padStart(2, "0")}`;
}

/** "59.98" -> "$59.98" (the API sends totals as decimal strings). */
export function formatAmount(amount: string): string {
  const cents = toCents(amount);
  return cents === null ? amount : formatCents(cents);
}
