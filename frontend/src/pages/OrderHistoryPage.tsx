import { useCallback, useEffect, useState } from "react";
import { Link } from "react-router-dom";
import { api, ApiError } from "../api";
import { SignedInLayout } from "../components/Layout";
import { formatAmount } from "../logic/price";
import { DEFAULT_SORT, nextSort, sortOrders } from "../logic/sortOrders";
import type { Order, Sort, SortKey } from "../logic/sortOrders";

const COLUMNS: { key: SortKey; label: string }[] = [
  { key: "createdAt", label: "Date" },
  { key: "productName", label: "Product" },
  { key: "sku", label: "SKU" },
  { key: "quantity", label: "Quantity" },
  { key: "totalPrice", label: "Total" },
  { key: "status", label: "Status" },
];

function cell(order: Order, key: SortKey) {
  switch (key) {
    case "createdAt":
      return <time dateTime={order.createdAt}>{new Date(order.createdAt).toLocaleString()}</time>;
    case "totalPrice":
      return formatAmount(order.totalPrice);
    default:
      return String(order[key]);
  }
}

export function OrderHistoryPage() {
  const [orders, setOrders] = useState<Order[] | null>(null);
  const [sort, setSort] = useState<Sort>(DEFAULT_SORT);
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      const answer = await api.orders();
      setOrders(answer.orders);
      setError(null);
    } catch (caught) {
      if (caught instanceof ApiError && caught.status !== 401) setError(caught.message);
    }
  }, []);

  useEffect(() => {
    void load();
  }, [load]);

  return (
    <SignedInLayout title="Order History">
      <div className="toolbar">
        <Link to="/orders">Place New Order</Link>
        <button type="button" className="secondary" onClick={() => void load()}>
          Refresh
        </button>
      </div>
      {error && (
        <div className="message error" role="alert">
          {error}
        </div>
      )}
      {orders === null && !error && <p>Loading…</p>}
      {orders?.length === 0 && <p className="empty">No orders yet</p>}
      {orders && orders.length > 0 && (
        <table className="orders-table">
          <thead>
            <tr>
              {COLUMNS.map(({ key, label }) => (
                <th key={key} scope="col" aria-sort={sort.key === key ? sort.direction : "none"}>
                  <button type="button" onClick={() => setSort(nextSort(sort, key))}>
                    {label}
                    <span className="sort-mark" aria-hidden="true">
                      {sort.key === key ? (sort.direction === "ascending" ? " ▲" : " ▼") : ""}
                    </span>
                  </button>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {sortOrders(orders, sort).map((order) => (
              <tr key={order.id}>
                {COLUMNS.map(({ key }) => (
                  <td key={key}>{cell(order, key)}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </SignedInLayout>
  );
}
