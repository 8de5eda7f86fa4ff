import { screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { mockFetch, renderApp } from "../test-helpers";

afterEach(() => vi.unstubAllGlobals());

const ORDERS = [
  { id: 1, productName: "Webcam", sku: "WC-606", quantity: 2, totalPrice: "119.98", status: "pending", createdAt: "2026-12-01T10:00:00.000Z" },
  { id: 2, productName: "Laptop", sku: "LT-303", quantity: 10, totalPrice: "9999.90", status: "pending", createdAt: "2026-12-03T09:00:00.000Z" },
  { id: 3, productName: "Mouse", sku: "MS-505", quantity: 9, totalPrice: "269.91", status: "completed", createdAt: "2026-12-02T12:30:00.000Z" },
];

function withOrders(orders: unknown[]) {
  mockFetch((url) =>
    url.endsWith("/orders") ? { body: { success: true, orders, count: orders.length } } : { body: {} },
  );
}

const productColumn = () =>
  screen
    .getAllByRole("row")
    .slice(1)
    .map((row) => within(row).getAllByRole("cell")[1]?.textContent);

describe("the order history", () => {
  it("says so when there are no orders", async () => {
    withOrders([]);
    renderApp("/my-orders");
    expect(await screen.findByText("No orders yet")).toBeInTheDocument();
    expect(screen.queryByRole("table")).toBeNull();
  });

  it("lists newest first with totals as dollars", async () => {
    withOrders(ORDERS);
    renderApp("/my-orders");
    await screen.findByRole("table");
    expect(productColumn()).toEqual(["Laptop", "Mouse", "Webcam"]);
    expect(screen.getByRole("columnheader", { name: /Date/ })).toHaveAttribute("aria-sort", "descending");
    expect(screen.getByText("$9,999.90")).toBeInTheDocument();
    expect(screen.getByText("$119.98")).toBeInTheDocument();
    const time = document.querySelector("time");
    expect(time).toHaveAttribute("datetime", "2026-12-03T09:00:00.000Z");
  });

  it("sorts by a header and toggles on a second click", async () => {
    withOrders(ORDERS);
    renderApp("/my-orders");
    await screen.findByRole("table");
    const header = screen.getByRole("columnheader", { name: /Product/ });
    await userEvent.click(within(header).getByRole("button"));
    expect(header).toHaveAttribute("aria-sort", "ascending");
    expect(screen.getByRole("columnheader", { name: /Date/ })).toHaveAttribute("aria-sort", "none");
    expect(productColumn()).toEqual(["Laptop", "Mouse", "Webcam"]);
    await userEvent.click(within(header).getByRole("button"));
    expect(header).toHaveAttribute("aria-sort", "descending");
    expect(productColumn()).toEqual(["Webcam", "Mouse", "Laptop"]);
    const quantity = screen.getByRole("columnheader", { name: /Quantity/ });
    await userEvent.click(within(quantity).getByRole("button"));
    expect(productColumn()).toEqual(["Webcam", "Mouse", "Laptop"]); // 2, 9, 10 numerically
  });

  it("renders names as text, never as markup", async () => {
    withOrders([{ ...ORDERS[0], productName: "<img src=x onerror=alert(1)>" }]);
    renderApp("/my-orders");
    expect(await screen.findByText("<img src=x onerror=alert(1)>")).toBeInTheDocument();
    expect(document.querySelector("img")).toBeNull();
  });

  it("reloads the list on Refresh", async () => {
    let answer: unknown[] = [];
    const fetch = mockFetch((url) =>
      url.endsWith("/orders") ? { body: { success: true, orders: answer, count: answer.length } } : { body: {} },
    );
    renderApp("/my-orders");
    await screen.findByText("No orders yet");
    answer = ORDERS.slice(0, 1);
    const refresh = screen.getByRole("button", { name: "Refresh" });
    expect(refresh).toHaveAttribute("type", "button");
    await userEvent.click(refresh);
    expect(await screen.findByText("Webcam")).toBeInTheDocument();
    expect(fetch.mock.calls.filter(([url]) => String(url).endsWith("/orders"))).toHaveLength(2);
    expect(screen.getByRole("link", { name: "Place New Order" })).toHaveAttribute("href", "/orders");
  });

  it("shows the API's message when the list cannot be read", async () => {
    mockFetch(() => ({ status: 503, body: { error: "Service Unavailable", message: "Database is unavailable" } }));
    renderApp("/my-orders");
    expect(await screen.findByRole("alert")).toHaveTextContent("Database is unavailable");
  });
});
