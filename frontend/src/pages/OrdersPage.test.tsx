import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { PRODUCTS, mockFetch, renderApp } from "../test-helpers";

afterEach(() => vi.unstubAllGlobals());

function backend(orderStatus = 201) {
  return mockFetch((url, init) => {
    if (url.includes("/products")) return { body: { success: true, products: PRODUCTS } };
    if (url.endsWith("/orders") && init.method === "POST") {
      return orderStatus === 201
        ? { status: 201, body: { success: true, messageId: "msg-123e4567" } }
        : { status: orderStatus, body: { error: "Service Unavailable", message: "Order could not be queued; please retry" } };
    }
    if (url.endsWith("/meta")) return { body: { colour: "blue", release: "0.1.0-abc", version: "0.1.0" } };
    return { status: 404, body: {} };
  });
}

describe("the order form", () => {
  it("lists products sorted by name with their price", async () => {
    backend();
    renderApp("/orders");
    await screen.findByRole("option", { name: "Keyboard — $49.99" });
    const options = screen.getAllByRole("option").map((o) => [o.getAttribute("value"), o.textContent]);
    expect(options).toEqual([
      ["", "Select a product"],
      ["7", "Keyboard — $49.99"],
      ["10", "Mouse — $29.99"],
      ["1", "Quantum Stabilizer — $249.99"],
    ]);
    expect(screen.getByText("Logged in as: Ada Lovelace")).toBeInTheDocument();
  });

  it("computes the total and enables submit only once a product is chosen", async () => {
    backend();
    renderApp("/orders");
    await screen.findByRole("option", { name: "Keyboard — $49.99" });
    const submit = screen.getByRole("button", { name: "Place Order" });
    const total = screen.getByLabelText("Total price");
    expect(submit).toBeDisabled();
    expect(total).toHaveValue(0);
    await userEvent.selectOptions(screen.getByLabelText("Product"), "7");
    expect(submit).toBeEnabled();
    expect(total).toHaveValue(49.99);
    const quantity = screen.getByLabelText("Quantity");
    await userEvent.clear(quantity);
    await userEvent.type(quantity, "3");
    expect(total).toHaveValue(149.97);
  });

  it("has the total as a read-only number input with the plain value, formatted beside it", async () => {
    backend();
    renderApp("/orders");
    await screen.findByRole("option", { name: "Keyboard — $49.99" });
    const total = document.querySelector<HTMLInputElement>('input[name="totalPrice"]');
    expect(total).toHaveAttribute("type", "number");
    expect(total).toHaveAttribute("readonly");
    expect(total?.value).toBe("0");
    await userEvent.selectOptions(screen.getByLabelText("Product"), "7");
    await userEvent.clear(screen.getByLabelText("Quantity"));
    await userEvent.type(screen.getByLabelText("Quantity"), "3");
    expect(total?.value).toBe("149.97");
    expect(screen.getByText("$149.97")).toBeInTheDocument();
    expect(total).toHaveAccessibleDescription("$149.97");
  });

  it("shows 0 for a quantity that truncates below 1", async () => {
    backend();
    renderApp("/orders");
    await screen.findByRole("option", { name: "Keyboard — $49.99" });
    await userEvent.selectOptions(screen.getByLabelText("Product"), "7");
    const quantity = screen.getByLabelText("Quantity");
    expect(quantity).toHaveAttribute("type", "number");
    expect(quantity).toHaveAttribute("min", "1");
    await userEvent.clear(quantity);
    expect(screen.getByLabelText("Total price")).toHaveValue(0);
    await userEvent.type(quantity, "0.5");
    expect(screen.getByLabelText("Total price")).toHaveValue(0);
    expect(screen.getByText("$0.00")).toBeInTheDocument();
  });

  it("disables submit while the order is being sent", async () => {
    let release: (response: Response) => void = () => {};
    vi.stubGlobal(
      "fetch",
      vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
        const url = String(input);
        if (url.includes("/products")) return Response.json({ success: true, products: PRODUCTS });
        if (init.method === "POST") return new Promise<Response>((resolve) => (release = resolve));
        return Response.json({});
      }),
    );
    renderApp("/orders");
    await screen.findByRole("option", { name: "Mouse — $29.99" });
    await userEvent.selectOptions(screen.getByLabelText("Product"), "10");
    await userEvent.click(screen.getByRole("button", { name: "Place Order" }));
    const pending = screen.getByRole("button", { name: /Placing order/ });
    expect(pending).toBeDisabled();
    release(Response.json({ success: true, messageId: "m-1" }, { status: 201 }));
    expect(await screen.findByText(/Message ID: m-1/)).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Place Order" })).toBeDisabled(); // reset: no product
  });

  it("shows the message id on success and resets the form", async () => {
    const fetch = backend();
    renderApp("/orders");
    await screen.findByRole("option", { name: "Mouse — $29.99" });
    await userEvent.selectOptions(screen.getByLabelText("Product"), "10");
    const quantity = screen.getByLabelText("Quantity");
    await userEvent.clear(quantity);
    await userEvent.type(quantity, "2");
    await userEvent.click(screen.getByRole("button", { name: "Place Order" }));
    const success = await screen.findByText(/Message ID: msg-123e4567/);
    expect(success).toHaveClass("message", "success");
    expect(screen.getByLabelText("Product")).toHaveValue("");
    expect(screen.getByLabelText("Quantity")).toHaveValue(1);
    expect(document.querySelector<HTMLInputElement>('input[name="totalPrice"]')?.value).toBe("0");
    const posted = fetch.mock.calls.find(([, init]) => init?.method === "POST");
    expect(JSON.parse(String(posted?.[1]?.body))).toEqual({ productId: 10, quantity: 2 });
  });

  it("shows the API's message when an order fails, and keeps the form", async () => {
    backend(503);
    renderApp("/orders");
    await screen.findByRole("option", { name: "Mouse — $29.99" });
    await userEvent.selectOptions(screen.getByLabelText("Product"), "10");
    await userEvent.click(screen.getByRole("button", { name: "Place Order" }));
    const error = await screen.findByRole("alert");
    expect(error).toHaveClass("message", "error");
    expect(error).toHaveTextContent("Order could not be queued; please retry");
    expect(screen.getByLabelText("Product")).toHaveValue("10");
  });

  it("signs the user out on a 401", async () => {
    mockFetch(() => ({ status: 401, body: { error: "Authentication failed", message: "Token expired" } }));
    renderApp("/orders");
    await screen.findByRole("heading", { name: "Login" });
    await waitFor(() => expect(sessionStorage.getItem("user")).toBeNull());
  });
});

describe("a quantity with decimals", () => {
  async function orderKeyboards(quantity: string) {
    const fetch = backend();
    renderApp("/orders");
    await screen.findByRole("option", { name: "Keyboard — $49.99" });
    await userEvent.selectOptions(screen.getByLabelText("Product"), "7");
    await userEvent.clear(screen.getByLabelText("Quantity"));
    await userEvent.type(screen.getByLabelText("Quantity"), quantity);
    return fetch;
  }

  const posted = (fetch: ReturnType<typeof backend>) =>
    fetch.mock.calls.filter(([, init]) => init?.method === "POST").map(([, init]) => JSON.parse(String(init?.body)));

  it("is truncated: 2.5 shows and orders 2", async () => {
    const fetch = await orderKeyboards("2.5");
    expect(screen.getByLabelText("Total price")).toHaveValue(99.98);
    await userEvent.click(screen.getByRole("button", { name: "Place Order" }));
    await screen.findByText(/Message ID/);
    expect(posted(fetch)).toEqual([{ productId: 7, quantity: 2 }]);
  });

  it.each(["0.5", "10000.5e1", "10001"])("that truncates outside 1..10000 (%s) is refused in the page", async (quantity) => {
    const fetch = await orderKeyboards(quantity);
    await userEvent.click(screen.getByRole("button", { name: "Place Order" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Quantity must be a whole number from 1 to 10000");
    expect(posted(fetch)).toEqual([]);
  });
});
