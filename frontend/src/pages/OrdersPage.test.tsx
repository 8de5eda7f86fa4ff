import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { PRODUCTS, mockFetch, renderApp } from "../test-helpers";

afterEach(() => vi.unstubAllGlobals());

const KEYBOARD = { id: 7, name: "Keyboard", cost: 49.99, sku: "KB-202" };

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

  it("signs the user out on a 401, forgetting the recommendations too", async () => {
    localStorage.setItem("recommendedProducts", JSON.stringify([KEYBOARD]));
    mockFetch(() => ({ status: 401, body: { error: "Authentication failed", message: "Token expired" } }));
    renderApp("/orders");
    await screen.findByRole("heading", { name: "Login" });
    await waitFor(() => expect(sessionStorage.getItem("user")).toBeNull());
    expect(localStorage.getItem("recommendedProducts")).toBeNull();
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

describe("the recommendations", () => {
  function seed(value: unknown) {
    localStorage.setItem("recommendedProducts", typeof value === "string" ? value : JSON.stringify(value));
  }

  async function openPage() {
    const fetch = backend();
    renderApp("/orders");
    await screen.findByRole("option", { name: "Keyboard — $49.99" });
    return fetch;
  }

  const entries = () => within(recommendationsSection()).queryAllByRole("button");
  const recommendationsSection = () =>
    screen.getByRole("heading", { name: "Recommended for you" }).closest("section") as HTMLElement;

  it("lists the stored products as buttons with name, price and SKU", async () => {
    seed([KEYBOARD, { id: 10, name: "Mouse", cost: 29.99, sku: "MS-505" }]);
    await openPage();
    expect(screen.getByRole("heading", { name: "Recommended for you" }).textContent).toBe("Recommended for you");
    const [keyboard, mouse] = entries();
    expect(entries()).toHaveLength(2);
    expect(keyboard).toHaveAttribute("tabindex", "0");
    expect(keyboard).toHaveTextContent("Keyboard");
    expect(keyboard).toHaveTextContent("$49.99");
    expect(keyboard).toHaveTextContent("KB-202");
    expect(mouse).toHaveTextContent("Mouse $29.99 SKU: MS-505");
  });

  it("selects the product on a click, on Enter and on Space, and the total follows", async () => {
    seed([KEYBOARD, { id: 10, name: "Mouse", cost: 29.99, sku: "MS-505" }, { id: 1, name: "Quantum Stabilizer", cost: 249.99, sku: "QS-001" }]);
    await openPage();
    const [keyboard, mouse, stabilizer] = entries();
    await userEvent.click(keyboard!);
    expect(screen.getByLabelText("Product")).toHaveValue("7");
    expect(screen.getByLabelText("Total price")).toHaveValue(49.99);
    mouse!.focus();
    await userEvent.keyboard("{Enter}");
    expect(screen.getByLabelText("Product")).toHaveValue("10");
    expect(screen.getByLabelText("Total price")).toHaveValue(29.99);
    stabilizer!.focus();
    await userEvent.keyboard(" ");
    expect(screen.getByLabelText("Product")).toHaveValue("1");
    expect(screen.getByRole("button", { name: "Place Order" })).toBeEnabled();
  });

  it.each([
    ["an id not in the catalogue", { id: 999, name: "Withdrawn", cost: 1, sku: "W-1" }],
    ["no id", { name: "Nameless id", cost: 1 }],
    ["a string id", { id: "7", name: "String id" }],
  ])("says so for %s instead of selecting", async (_, entry) => {
    seed([entry]);
    await openPage();
    await userEvent.selectOptions(screen.getByLabelText("Product"), "10");
    await userEvent.click(entries()[0]!);
    expect(await screen.findByRole("alert")).toHaveTextContent(`${entry.name} is not available to order`);
    expect(screen.getByLabelText("Product")).toHaveValue("10");
  });

  it("shows markup in stored values as text", async () => {
    const markup = "<img src=x onerror=alert(1)>";
    seed([{ id: 7, name: markup, cost: 49.99, sku: "<b>bold</b>" }]);
    await openPage();
    const [entry] = entries();
    expect(entry).toHaveTextContent(markup);
    expect(entry).toHaveTextContent("<b>bold</b>");
    expect(recommendationsSection().querySelector("img, b")).toBeNull();
  });

  it.each([
    ["not JSON", "{not json"],
    ["null", "null"],
    ["an object", '{"id": 7, "name": "Keyboard"}'],
    ["a string", '"Keyboard"'],
    ["an empty array", "[]"],
    ["only junk entries", JSON.stringify([null, 1, "Keyboard", [], {}, { name: 5 }, { id: 7 }])],
  ])("has none for %s, and the page works", async (_, stored) => {
    seed(stored);
    await openPage();
    expect(entries()).toHaveLength(0);
    expect(within(recommendationsSection()).getByText("No recommendations yet")).toBeInTheDocument();
    await userEvent.selectOptions(screen.getByLabelText("Product"), "7");
    expect(screen.getByLabelText("Total price")).toHaveValue(49.99);
  });

  it("shows no more than five of thousands of entries, skipping junk", async () => {
    seed(Array.from({ length: 5000 }, (_, i) => (i % 2 ? { ...KEYBOARD, name: `Keyboard ${i}` } : "junk")));
    await openPage();
    expect(entries().map((e) => e.querySelector(".name")?.textContent)).toEqual([
      "Keyboard 1",
      "Keyboard 3",
      "Keyboard 5",
      "Keyboard 7",
      "Keyboard 9",
    ]);
  });

  it("survives a localStorage that throws on reading", async () => {
    seed([KEYBOARD]);
    const original = Storage.prototype.getItem;
    const getItem = vi.spyOn(Storage.prototype, "getItem").mockImplementation(function (this: Storage, key: string) {
      if (this === localStorage) throw new DOMException("refused", "SecurityError");
      return original.call(this, key);
    });
    try {
      await openPage();
      expect(screen.getByText("No recommendations yet")).toBeInTheDocument();
    } finally {
      getItem.mockRestore();
    }
  });
});
