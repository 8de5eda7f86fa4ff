import { useState } from "react";
import type { ChangeEvent, FormEvent } from "react";
import { Link, useNavigate } from "react-router-dom";
import { api, ApiError } from "../api";
import { useAuth } from "../auth";
import { Field } from "../components/Field";
import { Alert } from "../components/Layout";
import { PasswordChecklist } from "../components/PasswordChecklist";
import { normaliseEmail, registrationErrors } from "../logic/validation";
import type { Registration } from "../logic/validation";

const FIELDS: { name: keyof Registration; label: string; type: string; autoComplete: string }[] = [
  { name: "username", label: "Username", type: "text", autoComplete: "username" },
  { name: "email", label: "Email", type: "email", autoComplete: "email" },
  { name: "fullName", label: "Full name", type: "text", autoComplete: "name" },
  { name: "password", label: "Password", type: "password", autoComplete: "new-password" },
  {
    name: "confirmPassword",
    label: "Confirm password",
    type: "password",
    autoComplete: "new-password",
  },
];

const EMPTY: Registration = { username: "", email: "", fullName: "", password: "", confirmPassword: "" };

export function RegisterPage() {
  const { signIn } = useAuth();
  const navigate = useNavigate();
  const [form, setForm] = useState<Registration>(EMPTY);
  const [errors, setErrors] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);

  function change(event: ChangeEvent<HTMLInputElement>) {
    setForm({ ...form, [event.target.name]: event.target.value });
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    const problems = registrationErrors(form);
    setErrors(problems);
    if (problems.length > 0) return;
    setBusy(true);
    try {
      const answer = await api.register({
        username: form.username,
        email: normaliseEmail(form.email),
        fullName: form.fullName,
        password: form.password,
      });
      signIn(answer.user, answer.recommendedProducts);
      navigate("/orders", { replace: true });
    } catch (caught) {
      setErrors(caught instanceof ApiError ? caught.messages : ["Registration failed"]);
      setBusy(false);
    }
  }

  return (
    <main className="card">
      <h1>Create Account</h1>
      <form onSubmit={submit} noValidate>
        {FIELDS.map((field) => (
          <div key={field.name} className="field">
            <Field
              id={`register-${field.name}`}
              name={field.name}
              label={field.label}
              type={field.type}
              autoComplete={field.autoComplete}
              value={form[field.name]}
              onChange={change}
              required
            />
            {field.name === "password" && <PasswordChecklist password={form.password} />}
          </div>
        ))}
        <Alert messages={errors} />
        <button type="submit" disabled={busy}>
          Create Account
        </button>
      </form>
      <p className="switch-page">
        Already registered? <Link to="/login">Login</Link>
      </p>
    </main>
  );
}
