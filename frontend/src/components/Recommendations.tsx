import type { KeyboardEvent } from "react";
import { formatCents } from "../logic/price";
import type { Recommendation } from "../logic/recommendations";

/** The "Recommended for you" section: one entry a product, chosen by click, Enter or Space.
 * Every value is a React text node, so a stored name such as <img onerror=…> is only text.
 * With no entries the section stays, saying "No recommendations yet", so that a person (and
 * a test) can tell an empty list from a page that failed to show one. */
export function Recommendations({
  recommendations,
  onChoose,
}: {
  recommendations: readonly Recommendation[];
  onChoose: (recommendation: Recommendation) => void;
}) {
  function onKeyDown(event: KeyboardEvent, recommendation: Recommendation) {
    if (event.key !== "Enter" && event.key !== " ") return;
    event.preventDefault(); // Space would scroll the page otherwise
    onChoose(recommendation);
  }

  return (
    <section className="recommendations" aria-labelledby="recommendations-heading">
      <h2 id="recommendations-heading">Recommended for you</h2>
      {recommendations.length === 0 ? (
        <p className="empty">No recommendations yet</p>
      ) : (
        <ul>
          {recommendations.map((recommendation, index) => (
            // Stored ids may repeat or be missing: the position is the only sure key.
            <li key={index}>
              <div
                role="button"
                tabIndex={0}
                className="recommendation"
                onClick={() => onChoose(recommendation)}
                onKeyDown={(event) => onKeyDown(event, recommendation)}
              >
                <span className="name">{recommendation.name}</span>
                {recommendation.costCents !== null && (
                  <span className="cost"> {formatCents(recommendation.costCents)}</span>
                )}
                {recommendation.sku !== null && <span className="sku"> SKU: {recommendation.sku}</span>}
              </div>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
