import { describe, expect, it } from "vitest";
import { DEFAULT_SORT, nextSort, sortOrders } from "./sortOrders";
import type { Order, SortKey } from "./sortOrders";

const order = (id: number, over: Partial<Order>): Order => ({
  id,
  productName: "Keyboard",
  sku: "KB-202",
  quantity: 1,
  totalPrice: "49.99",
  status: "pending",
  createdAt: "2026-12-01T10:00:00.000Z",
  ...over,
});

const ORDERS: Order[] = [
  order(1, { productName: "Webcam", sku: "WC-606", quantity: 2, totalPrice: "119.98", createdAt: "2026-12-01T10:00:00.000Z" }),
  order(2, { productName: "laptop", sku: "LT-303", quantity: 10, totalPrice: "9999.90", createdAt: "2026-12-03T09:00:00.000Z" }),
  order(3, { productName: "Mouse", sku: "MS-505", quantity: 9, totalPrice: "269.91", status: "completed", createdAt: "2026-12-02T12:30:00.000Z" }),
];
const ids = (orders: Order[]) => orders.map((o) => o.id);

describe("sorting the order history", () => {
  it("defaults to newest first", () => {
    expect(DEFAULT_SORT).toEqual({ key: "createdAt", direction: "descending" });
    expect(ids(sortOrders(ORDERS, DEFAULT_SORT))).toEqual([2, 3, 1]);
  });

  it.each<[SortKey, number[]]>([
    ["createdAt", [1, 3, 2]],
    ["productName", [2, 3, 1]], // case-insensitive: laptop, Mouse, Webcam
    ["sku", [2, 3, 1]],
    ["quantity", [1, 3, 2]], // numeric: 2, 9, 10 (not "10" < "2")
    ["totalPrice", [1, 3, 2]], // numeric: 119.98, 269.91, 9999.90
    ["status", [3, 1, 2]],
  ])("sorts %s both ways", (key, ascending) => {
    expect(ids(sortOrders(ORDERS, { key, direction: "ascending" }))).toEqual(ascending);
    const descending = ids(sortOrders(ORDERS, { key, direction: "descending" }));
    if (key === "status") {
      expect(descending[2]).toBe(3); // ties (pending) keep their order
    } else {
      expect(descending).toEqual([...ascending].reverse());
    }
  });

  it("keeps ties in their order and does not touch the input", () => {
    const input = [order(5, {}), order(6, {}), order(7, {})];
    expect(ids(sortOrders(input, { key: "productName", direction: "ascending" }))).toEqual([5, 6, 7]);
    const copy = [...ORDERS];
    sortOrders(ORDERS, { key: "sku", direction: "ascending" });
    expect(ORDERS).toEqual(copy);
  });

  it("breaks equal timestamps by id", () => {
    const same = [order(9, {}), order(8, {})];
    expect(ids(sortOrders(same, DEFAULT_SORT))).toEqual([9, 8]);
  });

  it("toggles a column and starts a new one ascending (Date newest first)", () => {
    expect(nextSort(DEFAULT_SORT, "createdAt")).toEqual({ key: "createdAt", direction: "ascending" });
    const product = nextSort(DEFAULT_SORT, "productName");
    expect(product).toEqual({ key: "productName", direction: "ascending" });
    expect(nextSort(product, "productName")).toEqual({ key: "productName", direction: "descending" });
    expect(nextSort(product, "createdAt")).toEqual(DEFAULT_SORT);
  });
});
