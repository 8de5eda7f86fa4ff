import { isStrongPassword } from "./password";

/** The API's registration rules (src/echobase/app/gateway/schemas.py), checked before
 * sending so that a person hears about every mistake at once. */
export interface Registration {
  username: string;
  email: string;
  fullName: string;
  password: string;
  confirmPassword: string;
}

const USERNAME = /^[A-Za-z0-9_]{3,50}$/;
const EMAIL =
  /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/;
const FULL_NAME = /^[\p{L}\p{N} '.-]+$/u;

export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

export function registrationErrors(form: Registration): string[] {
  const errors: string[] = [];
  if (!USERNAME.test(form.username)) {
    errors.push("Username must be 3-50 characters: letters, numbers and underscores");
  }
  const email = normaliseEmail(form.email);
  if (email.length > 255 || !EMAIL.test(email) || email.includes("..")) {
    errors.push("Email must be a valid address");
  }
  const nameLength = [...form.fullName].length;
  if (!form.fullName.trim() || nameLength > 255 || !FULL_NAME.test(form.fullName)) {
    errors.push("Full name must be 1-255 characters: letters, numbers, spaces, - ' .");
  }
  if (!isStrongPassword(form.password)) {
    errors.push(
      "Password must be at least 8 characters with an uppercase letter, a lowercase letter and a number",
    );
  }
  if (form.password !== form.confirmPassword) {
    errors.push("Passwords do not match");
  }
  return errors;
}
