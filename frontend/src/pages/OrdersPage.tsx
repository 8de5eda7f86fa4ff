import { useEffect, useState } from "react";
import type { FormEvent } from "react";
import { Link } from "react-router-dom";
import { api, ApiError } from "../api";
import type { Product } from "../api";
import { Field } from "../components/Field";
import { SignedInLayout } from "../components/Layout";
import { Recommendations } from "../components/Recommendations";
import { centsAsNumberText, formatCents, parseQuantity, totalCents } from "../logic/price";
import type { Recommendation } from "../logic/recommendations";
import { loadRecommendations } from "../session";

type Message = { kind: "success" | "error"; text: string };

export function sortedProducts(products: readonly Product[]): Product[] {
  return [...products].sort((a, b) => a.name.localeCompare(b.name));
}

export function OrdersPage() {
  const [products, setProducts] = useState<Product[]>([]);
  const [productId, setProductId] = useState("");
  const [quantity, setQuantity] = useState("1");
  const [message, setMessage] = useState<Message | null>(null);
  const [busy, setBusy] = useState(false);
  // Read once: the list is what the last sign-in left, and this page does not change it.
  const [recommendations] = useState<Recommendation[]>(loadRecommendations);

  useEffect(() => {
    let current = true;
    api
      .products()
      .then((answer) => current && setProducts(sortedProducts(answer.products)))
      .catch((caught: unknown) => {
        if (current && caught instanceof ApiError && caught.status !== 401) {
          setMessage({ kind: "error", text: caught.message });
        }
      });
    return () => {
      current = false;
    };
  }, []);

  const product = products.find((p) => String(p.id) === productId);
  const total = totalCents(product?.cost, quantity);

  /** Selects a recommended product if the catalogue has it; an id it lacks (a product
   * withdrawn since the sign-in, or a broken stored entry) is said, not selected. */
  function chooseRecommendation(recommendation: Recommendation) {
    const chosen = products.find((p) => p.id === recommendation.id);
    if (!chosen) {
      setMessage({ kind: "error", text: `${recommendation.name} is not available to order` });
      return;
    }
    setProductId(String(chosen.id));
    setMessage(null);
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    const count = parseQuantity(quantity);
    if (!product) return;
    if (count === null) {
      setMessage({ kind: "error", text: "Quantity must be a whole number from 1 to 10000" });
      return;
    }
    setBusy(true);
    setMessage(null);
    try {
      const answer = await api.placeOrder(product.id, count);
      setMessage({
        kind: "success",
        text: `Order submitted successfully! Message ID: ${answer.messageId}`,
      });
      setProductId("");
      setQuantity("1");
    } catch (caught) {
      setMessage({ kind: "error", text: caught instanceof ApiError ? caught.message : "Order failed" });
    } finally {
      setBusy(false);
    }
  }

  return (
    <SignedInLayout title="Echobase Order System">
      <form onSubmit={submit} className="order-form" noValidate>
        <label htmlFor="order-product">Product</label>
        <select
          id="order-product"
          name="productName"
          value={productId}
          onChange={(e) => setProductId(e.target.value)}
        >
          <option value="">Select a product</option>
          {products.map((p) => (
            <option key={p.id} value={String(p.id)}>
              {`${p.name} — $${p.cost}`}
            </option>
          ))}
        </select>
        <Field
          id="order-quantity"
          name="quantity"
          label="Quantity"
          type="number"
          inputMode="numeric"
          min={1}
          max={10000}
          step={1}
          value={quantity}
          onChange={(e) => setQuantity(e.target.value)}
        />
        {/* The plain number, as the reference's field holds it; the formatted amount is the
            text beside it. */}
        <Field
          id="order-total"
          name="totalPrice"
          label="Total price"
          type="number"
          readOnly
          value={centsAsNumberText(total)}
          aria-describedby="order-total-formatted"
        />
        <output id="order-total-formatted" htmlFor="order-total" className="total-formatted">
          {formatCents(total)}
        </output>
        <button type="submit" disabled={!product || busy}>
          {busy ? "Placing order…" : "Place Order"}
        </button>
      </form>
      {message && (
        <div
          className={`message ${message.kind}`}
          role={message.kind === "error" ? "alert" : "status"}
        >
          {message.text}
        </div>
      )}
      <Recommendations recommendations={recommendations} onChoose={chooseRecommendation} />
      <nav className="page-links">
        <Link to="/my-orders">View Order History</Link>
      </nav>
    </SignedInLayout>
  );
}
