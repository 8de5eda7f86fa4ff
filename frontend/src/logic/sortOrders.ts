export interface Order {
  id: number;
  productName: string;
  sku: string;
  quantity: number;
  totalPrice: string;
  status: string;
  createdAt: string;
}

export type SortKey = "createdAt" | "productName" | "sku" | "quantity" | "totalPrice" | "status";
export type Direction = "ascending" | "descending";
export interface Sort {
  key: SortKey;
  direction: Direction;
}

/** Newest first, as the API lists them. */
export const DEFAULT_SORT: Sort = { key: "createdAt", direction: "descending" };

function compare(a: Order, b: Order, key: SortKey): number {
  switch (key) {
    case "quantity":
      return a.quantity - b.quantity;
    case "totalPrice":
      return Number(a.totalPrice) - Number(b.totalPrice);
    case "createdAt":
      return Date.parse(a.createdAt) - Date.parse(b.createdAt) || a.id - b.id;
    default:
      return a[key].localeCompare(b[key], undefined, { sensitivity: "base", numeric: true });
  }
}

/** A sorted copy; ties keep their order (Array.prototype.sort is stable). */
export function sortOrders(orders: readonly Order[], sort: Sort): Order[] {
  const sign = sort.direction === "ascending" ? 1 : -1;
  return [...orders].sort((a, b) => sign * compare(a, b, sort.key));
}

/** Clicking a column: the same one flips its direction; another one starts ascending,
 * except Date, which starts newest first like the default. */
export function nextSort(current: Sort, key: SortKey): Sort {
  if (current.key === key) {
    return { key, direction: current.direction === "ascending" ? "descending" : "ascending" };
  }
  return { key, direction: key === "createdAt" ? "descending" : "ascending" };
}
