import { screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ADA, mockFetch, renderApp, validationFailure } from "../test-helpers";

afterEach(() => vi.unstubAllGlobals());

const RECOMMENDED = [{ id: 7, name: "Keyboard", cost: 49.99, sku: "KB-202" }];

async function fillIn(overrides: Partial<Record<string, string>> = {}) {
  const values = {
    Username: "ada",
    Email: " Ada@Example.com",
    "Full name": "Ada Lovelace",
    Password: "Passw0rdX",
    "Confirm password": "Passw0rdX",
    ...overrides,
  };
  for (const [label, value] of Object.entries(values)) {
    if (value) await userEvent.type(screen.getByLabelText(label), value);
  }
  await userEvent.click(screen.getByRole("button", { name: "Create Account" }));
}

describe("the registration page", () => {
  it("has the contract's fields, checklist and one link to login", () => {
    mockFetch(() => ({ body: {} }));
    renderApp("/register", false);
    expect(screen.getByRole("heading", { level: 1 })).toHaveTextContent("Create Account");
    for (const name of ["username", "email", "fullName", "password", "confirmPassword"]) {
      expect(document.querySelector(`input[name="${name}"]`), name).not.toBeNull();
    }
    expect(document.querySelector('input[name="password"]')).toHaveAttribute("type", "password");
    expect(document.querySelector('input[name="confirmPassword"]')).toHaveAttribute("type", "password");
    expect(document.querySelectorAll('a[href="/login"]')).toHaveLength(1);
    expect(screen.getByRole("list", { name: "Password requirements" })).toBeInTheDocument();
  });

  it("registers with a normalised email, stores the user and recommendations, and opens the order form", async () => {
    const fetch = mockFetch((url) =>
      url.endsWith("/auth/register")
        ? {
            status: 201,
            body: { success: true, message: "User registered successfully", user: ADA, recommendedProducts: RECOMMENDED },
          }
        : { body: { products: [] } },
    );
    renderApp("/register", false);
    await fillIn();
    expect(await screen.findByRole("heading", { name: "Echobase Order System" })).toBeInTheDocument();
    const sent = fetch.mock.calls.find(([url]) => String(url).endsWith("/auth/register"));
    expect(JSON.parse(String(sent?.[1]?.body))).toEqual({
      username: "ada",
      email: "ada@example.com",
      fullName: "Ada Lovelace",
      password: "Passw0rdX",
    });
    expect(JSON.parse(sessionStorage.getItem("user") ?? "null")).toEqual(ADA);
    expect(JSON.parse(localStorage.getItem("recommendedProducts") ?? "null")).toEqual(RECOMMENDED);
  });

  it("shows a taken username's message from the API", async () => {
    mockFetch(() => ({
      status: 409,
      body: { error: "User already exists", message: "Username or email is already registered" },
    }));
    renderApp("/register", false);
    await fillIn();
    expect(await screen.findByRole("alert")).toHaveTextContent("Username or email is already registered");
    expect(sessionStorage.getItem("user")).toBeNull();
  });

  it("lists each of the API's validation messages", async () => {
    mockFetch(() =>
      validationFailure({ email: "Email must be a valid address", username: "Username is taken by policy" }),
    );
    renderApp("/register", false);
    await fillIn();
    const alert = await screen.findByRole("alert");
    expect(within(alert).getAllByRole("listitem").map((li) => li.textContent)).toEqual([
      "Email must be a valid address",
      "Username is taken by policy",
    ]);
  });

  it("lists every client-side problem at once", async () => {
    const fetch = mockFetch(() => ({ body: {} }));
    renderApp("/register", false);
    await fillIn({ Username: "a b", Email: "nope", "Confirm password": "Passw0rdY" });
    const alert = await screen.findByRole("alert");
    expect(within(alert).getAllByRole("listitem")).toHaveLength(3);
    expect(alert).toHaveTextContent("Passwords do not match");
    expect(fetch.mock.calls.filter(([url]) => String(url).includes("/auth/"))).toHaveLength(0);
  });
});
