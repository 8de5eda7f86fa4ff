import type { InputHTMLAttributes } from "react";

type FieldProps = InputHTMLAttributes<HTMLInputElement> & { id: string; name: string; label: string };

/** An input with its label: every form field of the app, so none is ever unlabelled. */
export function Field({ label, id, ...input }: FieldProps) {
  return (
    <>
      <label htmlFor={id}>{label}</label>
      <input id={id} {...input} />
    </>
  );
}
