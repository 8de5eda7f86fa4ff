import { useState } from "react";
import type { FormEvent } from "react";
import { Link, useNavigate } from "react-router-dom";
import { api, ApiError } from "../api";
import { useAuth } from "../auth";
import { Field } from "../components/Field";
import { Alert } from "../components/Layout";

export function LoginPage() {
  const { signIn } = useAuth();
  const navigate = useNavigate();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!username || !password) {
      setError("Enter your username and password");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const answer = await api.login(username, password);
      signIn(answer.user, answer.recommendedProducts);
      navigate("/orders", { replace: true });
    } catch (caught) {
      setError(caught instanceof ApiError ? caught.message : "Login failed");
      setBusy(false);
    }
  }

  return (
    <main className="card">
      <h1>Login</h1>
      <form onSubmit={submit} noValidate>
        <Field
          id="login-username"
          name="username"
          label="Username"
          autoComplete="username"
          value={username}
          onChange={(e) => setUsername(e.target.value)}
          required
        />
        <Field
          id="login-password"
          name="password"
          label="Password"
          type="password"
          autoComplete="current-password"
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          required
        />
        <Alert messages={error ? [error] : []} />
        <button type="submit" disabled={busy}>
          Login
        </button>
      </form>
      <p className="switch-page">
        No account yet? <Link to="/register">Create one</Link>
      </p>
    </main>
  );
}
