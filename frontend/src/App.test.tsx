import { render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ServedBy } from "./components/ServedBy";
import { ADA, mockFetch, renderApp } from "./test-helpers";

afterEach(() => vi.unstubAllGlobals());

const RECOMMENDED = [
  { id: 7, name: "Keyboard", cost: 49.99, sku: "KB-202" },
  { id: 10, name: "Mouse", cost: 29.99, sku: "MS-505" },
];

async function logIn() {
  await userEvent.type(screen.getByLabelText("Username"), "ada");
  await userEvent.type(screen.getByLabelText("Password"), "Passw0rdX");
  await userEvent.click(screen.getByRole("button", { name: "Login" }));
  await screen.findByRole("heading", { name: "Echobase Order System" });
}

describe("the recommendations of a sign-in answer", () => {
  it("are kept in localStorage as they came, and shown", async () => {
    mockFetch((url) =>
      url.endsWith("/auth/login")
        ? { body: { success: true, user: ADA, recommendedProducts: RECOMMENDED } }
        : { body: { products: [] } },
    );
    renderApp("/login", false);
    await logIn();
    expect(JSON.parse(localStorage.getItem("recommendedProducts") ?? "null")).toEqual(RECOMMENDED);
    expect(await screen.findByRole("button", { name: /Mouse \$29\.99 SKU: MS-505/ })).toBeInTheDocument();
  });

  it.each([
    ["no key", {}],
    ["null", { recommendedProducts: null }],
    ["an object", { recommendedProducts: { 0: RECOMMENDED[0] } }],
    ["a string", { recommendedProducts: "Keyboard" }],
  ])("replace an earlier list with none when the answer has %s", async (_, extra) => {
    localStorage.setItem("recommendedProducts", JSON.stringify(RECOMMENDED));
    mockFetch((url) =>
      url.endsWith("/auth/login") ? { body: { success: true, user: ADA, ...extra } } : { body: { products: [] } },
    );
    renderApp("/login", false);
    await logIn();
    expect(localStorage.getItem("recommendedProducts")).toBeNull();
    expect(screen.getByText("No recommendations yet")).toBeInTheDocument();
  });
});

describe("the stored user", () => {
  it("counts as signed in with only a username, greeted by it", async () => {
    sessionStorage.setItem("user", JSON.stringify({ username: "ada" }));
    mockFetch(() => ({ body: { products: [] } }));
    renderApp("/orders", false);
    expect(await screen.findByRole("heading", { name: "Echobase Order System" })).toBeInTheDocument();
    expect(screen.getByText("Logged in as: ada")).toBeInTheDocument();
  });

  it.each(["not json", "[]", '"str"', '{"username": 5}', "null", '{"fullName": "Ada"}'])(
    "is nobody for %s: the order page sends to login",
    async (stored) => {
      sessionStorage.setItem("user", stored);
      mockFetch(() => ({ status: 401, body: {} }));
      renderApp("/orders", false);
      expect(await screen.findByRole("heading", { name: "Login" })).toBeInTheDocument();
    },
  );

  it("shows markup in the username and full name as text", async () => {
    const markup = "<img src=x onerror=alert(1)>";
    mockFetch(() => ({ body: { products: [] } }));
    sessionStorage.setItem("user", JSON.stringify({ username: markup, fullName: 5 }));
    const { unmount } = renderApp("/orders", false);
    expect(await screen.findByText(`Logged in as: ${markup}`)).toBeInTheDocument();
    expect(document.querySelector("header img")).toBeNull();
    unmount();
    sessionStorage.setItem("user", JSON.stringify({ username: "ada", fullName: "<script>alert(1)</script>" }));
    renderApp("/orders", false);
    expect(await screen.findByText("Logged in as: <script>alert(1)</script>")).toBeInTheDocument();
    expect(document.querySelector("header script")).toBeNull();
  });
});

describe("routes and the session", () => {
  it.each(["/", "/orders", "/my-orders", "/nowhere"])("sends a signed-out visitor from %s to login", async (path) => {
    mockFetch(() => ({ status: 401, body: {} }));
    renderApp(path, false);
    expect(await screen.findByRole("heading", { name: "Login" })).toBeInTheDocument();
  });

  it.each(["/", "/login"])("sends a signed-in user from %s to the order form", async (path) => {
    mockFetch(() => ({ body: { products: [] } }));
    renderApp(path);
    expect(await screen.findByRole("heading", { name: "Echobase Order System" })).toBeInTheDocument();
  });

  it("keeps /register open to a signed-in user", async () => {
    mockFetch(() => ({ body: { products: [] } }));
    renderApp("/register");
    expect(await screen.findByRole("heading", { name: "Create Account" })).toBeInTheDocument();
    expect(JSON.parse(sessionStorage.getItem("user") ?? "null")).toEqual(ADA);
  });

  it("shows a failed login in an alert and stores nothing", async () => {
    mockFetch(() => ({ status: 401, body: { error: "Authentication failed", message: "Invalid username or password" } }));
    renderApp("/login", false);
    await userEvent.type(screen.getByLabelText("Username"), "ada");
    await userEvent.type(screen.getByLabelText("Password"), "wrong");
    await userEvent.click(screen.getByRole("button", { name: "Login" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Invalid username or password");
    expect(sessionStorage.getItem("user")).toBeNull();
  });

  it("keeps the signed-in user's public fields after login", async () => {
    mockFetch((url) =>
      url.endsWith("/auth/login") ? { body: { success: true, user: ADA } } : { body: { products: [] } },
    );
    renderApp("/login", false);
    await userEvent.type(screen.getByLabelText("Username"), "ada");
    await userEvent.type(screen.getByLabelText("Password"), "Passw0rdX");
    await userEvent.click(screen.getByRole("button", { name: "Login" }));
    await screen.findByText("Logged in as: Ada Lovelace");
    expect(JSON.parse(sessionStorage.getItem("user") ?? "null")).toEqual(ADA);
  });

  it("logs out through the API, clears storage and goes to login", async () => {
    const fetch = mockFetch(() => ({ body: { products: [] } }));
    localStorage.setItem("recommendedProducts", JSON.stringify(RECOMMENDED));
    renderApp("/orders");
    const logout = await screen.findByRole("button", { name: "Logout" });
    expect(logout).toHaveAttribute("type", "button");
    await userEvent.click(logout);
    await screen.findByRole("heading", { name: "Login" });
    expect(sessionStorage.length).toBe(0);
    expect(localStorage.getItem("recommendedProducts")).toBeNull();
    expect(fetch.mock.calls.some(([url, init]) => String(url).endsWith("/auth/logout") && init?.method === "POST")).toBe(true);
  });

  it("explains a network failure on login in words", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => Promise.reject(new TypeError("Failed to fetch"))));
    renderApp("/login", false);
    await userEvent.type(screen.getByLabelText("Username"), "ada");
    await userEvent.type(screen.getByLabelText("Password"), "Passw0rdX");
    await userEvent.click(screen.getByRole("button", { name: "Login" }));
    expect(await screen.findByRole("alert")).toHaveTextContent(/Cannot reach the server/);
  });

  it("signs out locally even when the logout request fails", async () => {
    mockFetch((url) => (url.endsWith("/auth/logout") ? { status: 503, body: {} } : { body: { products: [] } }));
    localStorage.setItem("recommendedProducts", JSON.stringify(RECOMMENDED));
    renderApp("/orders");
    await userEvent.click(await screen.findByRole("button", { name: "Logout" }));
    expect(await screen.findByRole("heading", { name: "Login" })).toBeInTheDocument();
    expect(sessionStorage.getItem("user")).toBeNull();
    expect(localStorage.getItem("recommendedProducts")).toBeNull();
  });

  it("has the login page's contract: one h1, named inputs, a submit button and a link to register", () => {
    mockFetch(() => ({ body: {} }));
    renderApp("/login", false);
    expect(document.querySelectorAll("h1")).toHaveLength(1);
    expect(document.querySelector("h1")).toHaveTextContent("Login");
    expect(document.querySelector('input[name="username"]')).not.toBeNull();
    expect(document.querySelector('input[name="password"]')).toHaveAttribute("type", "password");
    const submits = document.querySelectorAll('button[type="submit"]');
    expect(submits).toHaveLength(1);
    expect(submits[0]).toHaveTextContent("Login");
    expect(document.querySelector('a[href="/register"]')).not.toBeNull();
  });

  it("refuses a bad registration before sending anything", async () => {
    const fetch = mockFetch(() => ({ body: {} }));
    renderApp("/register", false);
    await userEvent.type(screen.getByLabelText("Username"), "ada");
    await userEvent.type(screen.getByLabelText("Email"), "ada@example.com");
    await userEvent.type(screen.getByLabelText("Full name"), "<b>Ada</b>");
    await userEvent.type(screen.getByLabelText("Password"), "Passw0rdX");
    await userEvent.type(screen.getByLabelText("Confirm password"), "Passw0rdX");
    await userEvent.click(screen.getByRole("button", { name: "Create Account" }));
    expect(await screen.findByRole("alert")).toHaveTextContent(/Full name/);
    expect(fetch.mock.calls.filter(([url]) => String(url).includes("/auth/"))).toHaveLength(0);
  });

  it("shows the footer's colour and release", async () => {
    mockFetch((url) =>
      url.endsWith("/meta") ? { body: { colour: "green", release: "0.1.0-abc", version: "0.1.0" } } : { status: 401, body: {} },
    );
    render(<ServedBy />);
    await waitFor(() => expect(screen.getByTestId("colour")).toHaveTextContent("green"));
    expect(screen.getByTestId("release")).toHaveTextContent("0.1.0-abc");
    expect(document.querySelector("footer")).toHaveClass("colour-green");
  });
});

describe("the footer without an answer", () => {
  it("says unknown when the meta endpoint fails", async () => {
    mockFetch(() => ({ status: 503, body: {} }));
    render(<ServedBy />);
    await waitFor(() => expect(screen.getByTestId("colour")).toHaveTextContent("unknown"));
  });
});
