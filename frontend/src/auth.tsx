import { createContext, useCallback, useContext, useEffect, useMemo, useState } from "react";
import type { ReactNode } from "react";
import { useNavigate } from "react-router-dom";
import { api, setUnauthorisedHandler } from "./api";
import { clearSession, loadUser, saveRecommendations, saveUser } from "./session";
import type { User } from "./session";

interface Auth {
  user: User | null;
  /** Keeps a login or register answer: the user and its recommendedProducts. */
  signIn: (user: User, recommendations: unknown) => void;
  signOut: () => Promise<void>;
}

const AuthContext = createContext<Auth | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [user, setUser] = useState<User | null>(loadUser);
  const navigate = useNavigate();

  const forget = useCallback(() => {
    clearSession();
    setUser(null);
  }, []);

  useEffect(() => {
    setUnauthorisedHandler(() => {
      forget();
      navigate("/login", { replace: true });
    });
  }, [forget, navigate]);

  const signIn = useCallback((signedIn: User, recommendations: unknown) => {
    saveUser(signedIn);
    saveRecommendations(recommendations);
    setUser(signedIn);
  }, []);

  const signOut = useCallback(async () => {
    try {
      await api.logout();
    } catch {
      // Signed out here whatever the server said: the cookie expires on its own.
    }
    forget();
    navigate("/login", { replace: true });
  }, [forget, navigate]);

  const value = useMemo(() => ({ user, signIn, signOut }), [user, signIn, signOut]);
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): Auth {
  const auth = useContext(AuthContext);
  if (!auth) throw new Error("useAuth outside AuthProvider");
  return auth;
}
