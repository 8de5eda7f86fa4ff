import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { useState } from "react";
import { PasswordChecklist } from "./PasswordChecklist";

function Harness() {
  const [password, setPassword] = useState("");
  return (
    <>
      <label htmlFor="p">Password</label>
      <input id="p" value={password} onChange={(e) => setPassword(e.target.value)} />
      <PasswordChecklist password={password} />
    </>
  );
}

const states = () =>
  screen.getAllByRole("listitem").map((item) => within(item).getByText(/^(Met|Not met)$/).textContent);

describe("PasswordChecklist", () => {
  it("starts with every rule not met, in words for screen readers", () => {
    render(<Harness />);
    expect(screen.getAllByRole("listitem")).toHaveLength(4);
    expect(states()).toEqual(["Not met", "Not met", "Not met", "Not met"]);
  });

  it("updates as the person types", async () => {
    render(<Harness />);
    const input = screen.getByLabelText("Password");
    await userEvent.type(input, "a");
    expect(states()).toEqual(["Not met", "Not met", "Met", "Not met"]);
    await userEvent.type(input, "A1");
    expect(states()).toEqual(["Not met", "Met", "Met", "Met"]);
    await userEvent.type(input, "bcdef");
    expect(states()).toEqual(["Met", "Met", "Met", "Met"]);
    expect(screen.getByText("At least 8 characters").closest("li")).toHaveClass("met");
    await userEvent.clear(input);
    expect(screen.getByText("A number").closest("li")).toHaveClass("not-met");
  });
});
