/** The "Recommended for you" list kept in localStorage.recommendedProducts: read as
 * untrusted data, since anything (another script on the origin, an older release, a person
 * with the dev tools) may have written there. A broken value shows less, never breaks the
 * page. */
import { costToCents } from "./price";

export interface Recommendation {
  /** null when missing or not a product id: choosing the entry then says so. */
  id: number | null;
  name: string;
  /** null when missing or not an amount: the entry shows no price. */
  costCents: number | null;
  /** null when missing or not text: the entry shows no SKU. */
  sku: string | null;
}

/** How many entries the page shows at most, whatever the storage holds. */
export const MAX_RECOMMENDATIONS = 5;
/** Longer names and SKUs are cut: the section is a hint, not a place for a megabyte of text. */
export const MAX_TEXT_LENGTH = 120;

/** Trimmed text of at most MAX_TEXT_LENGTH characters (code points, so that no emoji is cut
 * in half); null for anything but non-blank text. */
export function shortText(value: unknown): string | null {
  if (typeof value !== "string") return null;
  const text = value.trim();
  if (!text) return null;
  // A code point is at most two UTF-16 units: MAX_TEXT_LENGTH + 1 points fit in this slice
  // of any longer text, and the rest of a huge string is never split into an array.
  const points = Array.from(text.slice(0, (MAX_TEXT_LENGTH + 1) * 2));
  return points.length <= MAX_TEXT_LENGTH ? text : `${points.slice(0, MAX_TEXT_LENGTH - 1).join("")}…`;
}

function productId(value: unknown): number | null {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0 ? value : null;
}

/** One stored entry as the page shows it, or null to skip it: an entry must be an object
 * with a name (there is nothing to show a person otherwise); the other fields are each
 * dropped on their own when they are missing or of the wrong type. */
export function toRecommendation(entry: unknown): Recommendation | null {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) return null;
  const fields = entry as Record<string, unknown>;
  const name = shortText(fields.name);
  if (name === null) return null;
  return {
    id: productId(fields.id),
    name,
    costCents: costToCents(fields.cost),
    sku: shortText(fields.sku),
  };
}

/** The stored text as at most MAX_RECOMMENDATIONS entries; anything but a JSON array is
 * none at all. Stops reading at the last entry shown, so thousands of entries cost little. */
export function parseRecommendations(stored: string | null): Recommendation[] {
  if (stored === null) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(stored);
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return [];
  const shown: Recommendation[] = [];
  for (const entry of parsed) {
    const recommendation = toRecommendation(entry);
    if (recommendation) shown.push(recommendation);
    if (shown.length === MAX_RECOMMENDATIONS) break;
  }
  return shown;
}
