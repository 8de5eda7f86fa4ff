import type { ReactNode } from "react";
import { Navigate, Route, Routes } from "react-router-dom";
import { AuthProvider, useAuth } from "./auth";
import { ServedBy } from "./components/ServedBy";
import { LoginPage } from "./pages/LoginPage";
import { OrderHistoryPage } from "./pages/OrderHistoryPage";
import { OrdersPage } from "./pages/OrdersPage";
import { RegisterPage } from "./pages/RegisterPage";

function SignedIn({ children }: { children: ReactNode }) {
  const { user } = useAuth();
  return user ? children : <Navigate to="/login" replace />;
}

function SignedOut({ children }: { children: ReactNode }) {
  const { user } = useAuth();
  return user ? <Navigate to="/orders" replace /> : children;
}

function Home() {
  const { user } = useAuth();
  return <Navigate to={user ? "/orders" : "/login"} replace />;
}

export function AppRoutes() {
  return (
    <Routes>
      <Route path="/" element={<Home />} />
      <Route path="/login" element={<SignedOut><LoginPage /></SignedOut>} />
      {/* Open to a signed-in user too, as in the reference: registering signs in as the new
          account. */}
      <Route path="/register" element={<RegisterPage />} />
      <Route path="/orders" element={<SignedIn><OrdersPage /></SignedIn>} />
      <Route path="/my-orders" element={<SignedIn><OrderHistoryPage /></SignedIn>} />
      <Route path="*" element={<Navigate to="/" replace />} />
    </Routes>
  );
}

export function App() {
  return (
    <AuthProvider>
      <div className="app">
        <AppRoutes />
        <ServedBy />
      </div>
    </AuthProvider>
  );
}
