"""The chaos suite's books can fail: each kind of wrong book is caught, with no system
running (tests/chaos/books.py is what every chaos scenario's verdict comes from)."""

from __future__ import annotations

from chaos.books import Books, balance

ACCEPTED = ["a", "b", "c"]
CLEAN = {"a": 1, "b": 1, "c": 1}


def test_clean_books_balance() -> None:
    verdict = balance(Books(ACCEPTED, CLEAN, {}, unanswered_posts=0))
    assert verdict.balanced, verdict.problems
    assert (verdict.stored, verdict.lost, verdict.duplicates, verdict.dlq) == (3, 0, 0, 0)


def test_a_lost_order_fails() -> None:
    verdict = balance(Books(ACCEPTED, {"a": 1, "b": 1}, {}, unanswered_posts=0))
    assert not verdict.balanced
    assert verdict.lost == 1
    assert any("neither stored nor in a DLQ" in p for p in verdict.problems)


def test_an_order_stored_twice_fails() -> None:
    verdict = balance(Books(ACCEPTED, {**CLEAN, "b": 2}, {}, unanswered_posts=0))
    assert not verdict.balanced
    assert verdict.duplicates == 1
    assert any("stored more than once" in p for p in verdict.problems)


def test_more_unacknowledged_orders_than_unanswered_posts_fails() -> None:
    rows = {**CLEAN, "x": 1, "y": 1}
    assert balance(Books(ACCEPTED, rows, {}, unanswered_posts=2)).balanced
    verdict = balance(Books(ACCEPTED, rows, {}, unanswered_posts=1))
    assert not verdict.balanced
    assert verdict.duplicates == 1


def test_an_unexpected_dlq_entry_fails_even_though_nothing_is_lost() -> None:
    rows = {"a": 1, "b": 1}
    verdict = balance(Books(ACCEPTED, rows, {"c": "database outage"}, unanswered_posts=0))
    assert verdict.lost == 0  # the old books counted this as fine
    assert not verdict.balanced
    assert verdict.dlq == 1 and verdict.expected_dlq == 0
    assert any("1 order(s) in a DLQ, 0 expected" in p for p in verdict.problems)


def test_a_dlq_entry_moved_by_the_redrive_policy_fails_too() -> None:
    """No FailureReason (the redrive policy moved it): still an entry, still counted."""
    verdict = balance(Books(ACCEPTED, {"a": 1, "b": 1}, {"c": None}, unanswered_posts=0))
    assert not verdict.balanced
    assert any("redrive" in p for p in verdict.problems)


def test_an_expected_dlq_entry_balances_and_a_missing_one_fails() -> None:
    """A scenario that must dead-letter (a poison order, say) fails when nothing arrives."""
    books = Books(ACCEPTED, {"a": 1, "b": 1}, {"c": "invalid"}, 0, expected_dlq=1)
    assert balance(books).balanced
    verdict = balance(Books(ACCEPTED, CLEAN, {}, 0, expected_dlq=1))
    assert not verdict.balanced


def test_an_order_both_stored_and_dead_lettered_fails() -> None:
    verdict = balance(Books(ACCEPTED, CLEAN, {"a": "oops"}, 0, expected_dlq=1))
    assert not verdict.balanced
    assert any("both stored and dead-lettered" in p for p in verdict.problems)
