"""Balancing a chaos scenario's books: pure, so that it can be shown to fail.

The harness gathers what the users were told (the order ids that got a 201, the POSTs that
got no 201), what the database holds for those users, and what reached a dead-letter queue
during the scenario; ``balance`` decides. Every way the books can be wrong is a problem with
its own sentence, and an empty list of problems is the only passing verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Books:
    accepted: Sequence[str]  # order ids the API acknowledged with a 201
    rows: Mapping[str, int]  # order id -> rows in the database, every order of these users
    # DLQ entries that appeared during the scenario: order id (message id if the body is not
    # an order) -> the processor's FailureReason, or None when the redrive policy moved it.
    dead_lettered: Mapping[str, str | None]
    unanswered_posts: int  # POSTs that got anything but a 201 (an order may still exist)
    # Transient faults (restarts, kills, an outage) must not dead-letter anything: a
    # DLQ entry then means a good order was given up on, which "not lost" would hide.
    expected_dlq: int = 0


@dataclass(frozen=True)
class Verdict:
    accepted: int
    stored: int
    lost: int
    duplicates: int
    stored_without_201: int
    dlq: int
    expected_dlq: int
    problems: tuple[str, ...] = field(default=())

    @property
    def balanced(self) -> bool:
        return not self.problems


def balance(books: Books) -> Verdict:
    accepted = set(books.accepted)
    problems: list[str] = []
    if len(accepted) != len(books.accepted):
        problems.append("the API acknowledged one order id twice")
    stored = {uid for uid in accepted if books.rows.get(uid, 0) > 0}
    in_dlq = set(books.dead_lettered)
    lost = sorted(accepted - stored - in_dlq)
    if lost:
        problems.append(
            f"{len(lost)} acknowledged order(s) neither stored nor in a DLQ: {lost[:5]}"
        )
    doubled = {uid: n for uid, n in books.rows.items() if n > 1}
    # An order can be stored without its 201 (the gateway sent it, then died before
    # answering); at most one per POST that got no 201. More than that means a request was
    # carried out twice, as surely as two rows for one id.
    extra = sum(1 for uid in books.rows if uid not in accepted)
    unexplained = max(0, extra - books.unanswered_posts)
    duplicates = sum(n - 1 for n in doubled.values()) + unexplained
    if doubled:
        problems.append(f"{len(doubled)} order(s) stored more than once: {sorted(doubled)[:5]}")
    if unexplained:
        problems.append(
            f"{extra} order(s) stored without a 201, but only {books.unanswered_posts} POST(s) "
            "went unanswered: requests were carried out twice"
        )
    both = sorted(stored & in_dlq)
    if both:
        problems.append(f"{len(both)} order(s) both stored and dead-lettered: {both[:5]}")
    if len(in_dlq) != books.expected_dlq:
        reasons = sorted(
            {reason or "moved by the redrive policy" for reason in books.dead_lettered.values()}
        )
        problems.append(
            f"{len(in_dlq)} order(s) in a DLQ, {books.expected_dlq} expected"
            + (f" (reasons: {'; '.join(reasons)[:300]})" if reasons else "")
        )
    return Verdict(
        accepted=len(accepted),
        stored=len(stored),
        lost=len(lost),
        duplicates=duplicates,
        stored_without_201=extra,
        dlq=len(in_dlq),
        expected_dlq=books.expected_dlq,
        problems=tuple(problems),
    )
