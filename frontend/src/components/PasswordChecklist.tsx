import { passwordChecks } from "../logic/password";

/** Each rule with its state, in words for screen readers ("Met" / "Not met"), updated as the
 * person types. */
export function PasswordChecklist({ password }: { password: string }) {
  return (
    <ul className="password-checklist" aria-label="Password requirements" aria-live="polite">
      {passwordChecks(password).map(({ rule, met }) => (
        <li key={rule.id} className={met ? "met" : "not-met"}>
          <span className="mark" aria-hidden="true">
            {met ? "✓" : "○"}
          </span>
          {rule.label}
          <span className="sr-only">{met ? "Met" : "Not met"}</span>
        </li>
      ))}
    </ul>
  );
}
