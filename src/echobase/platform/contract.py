"""Expand/contract: which pending schema changes would break the release that is still live.

Blue and green share one database, and a deploy migrates it while the live colour keeps
serving. So a migration may only *expand* (add tables, columns, indexes); dropping or
renaming what the live release still reads or writes (a *contract*) must wait for a later
release, or be forced by the operator. These functions are pure: they read the offline SQL
of the target release's pending revisions (``python -m echobase.app.db.migrate pending``)
and the live release's tables and columns (``... migrate schema``).

What counts as destructive (see ``destructive_statements``):

- ``DROP TABLE``, ``ALTER TABLE ... DROP [COLUMN]``, table and column renames (``RENAME
  TABLE``, ``ALTER TABLE ... RENAME [TO]``, ``RENAME COLUMN``, ``CHANGE old new``);
- ``MODIFY`` and ``CHANGE`` keeping the name (``modify_column``): the type or NULL-ness of
  a column changes, and a narrower type or a new NOT NULL breaks the old release's writes.
  Widening is harmless, but SQL alone does not tell the two apart, so it is reported and
  the operator decides (``--allow-contract``);
- ``CREATE OR REPLACE TABLE``: MariaDB drops the existing table first, so it is reported as
  ``drop_table`` although every other ``CREATE`` is an expansion.

Not reported: ``ADD ...``, ``CREATE ...``, index, key and constraint drops (``DROP INDEX``,
``DROP FOREIGN KEY``, ``DROP PRIMARY KEY``, ``DROP CONSTRAINT``): the live release's
statements still run without them, only slower or less checked. Data statements
(``UPDATE``, ``DELETE``, ``TRUNCATE``), temporary tables, views and ``DROP DATABASE`` are
not schema contracts either and are left to review.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

ChangeKind = Literal["drop_table", "drop_column", "rename_table", "rename_column", "modify_column"]


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    table: str
    column: str | None
    statement: str
    # The table's or column's new name, for renames.
    new_name: str | None = None
    # The migration revision the statement belongs to, for messages.
    revision: str | None = None


# --- lexing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: Literal["word", "ident", "string", "punct"]
    text: str  # for "ident": the unquoted name
    start: int
    end: int

    def is_word(self, *words: str) -> bool:
        """An unquoted keyword: a backticked `drop` is a name, never the keyword."""
        return self.kind == "word" and self.text.upper() in words

    @property
    def is_name(self) -> bool:
        return self.kind in ("word", "ident")


_WORD = re.compile(r"[\w$]+")
_EXECUTABLE_COMMENT = re.compile(r"/\*M?!\d*")


def _tokens(sql: str) -> list[_Token]:
    """MySQL/MariaDB lexing, just enough to never mistake a string or comment for DDL."""
    tokens: list[_Token] = []
    i, n = 0, len(sql)
    # /*! ... */ and /*M! ... */ are not comments to the server: their content runs.
    open_executable = 0
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i) and (i + 2 == n or sql[i + 2].isspace()):
            i = _line_end(sql, i)
        elif c == "#":
            i = _line_end(sql, i)
        elif match := _EXECUTABLE_COMMENT.match(sql, i):
            open_executable += 1
            i = match.end()
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            i = n if close < 0 else close + 2
        elif open_executable and sql.startswith("*/", i):
            open_executable -= 1
            i += 2
        elif c in "'\"`":
            end, text = _quoted(sql, i)
            tokens.append(_Token("ident" if c == "`" else "string", text, i, end))
            i = end
        elif match := _WORD.match(sql, i):
            tokens.append(_Token("word", match.group(), i, match.end()))
            i = match.end()
        else:
            tokens.append(_Token("punct", c, i, i + 1))
            i += 1
    return tokens


def _line_end(sql: str, i: int) -> int:
    end = sql.find("\n", i)
    return len(sql) if end < 0 else end + 1


def _quoted(sql: str, start: int) -> tuple[int, str]:
    """End offset and content of a quoted string or identifier (doubled quotes; backslash
    escapes in strings). An unterminated one runs to the end, as the server would read it."""
    quote = sql[start]
    i, out = start + 1, []
    while i < len(sql):
        c = sql[i]
        if c == "\\" and quote != "`" and i + 1 < len(sql):
            out.append(sql[i + 1])
            i += 2
        elif c == quote:
            if sql.startswith(quote, i + 1):
                out.append(quote)
                i += 2
            else:
                return i + 1, "".join(out)
        else:
            out.append(c)
            i += 1
    return len(sql), "".join(out)


def _statements(sql: str) -> list[tuple[list[_Token], str]]:
    """Each statement's tokens and its text (as written, comments and all)."""
    out: list[tuple[list[_Token], str]] = []
    current: list[_Token] = []
    for token in [*_tokens(sql), None]:
        if token is None or (token.kind == "punct" and token.text == ";"):
            if current:
                out.append((current, sql[current[0].start : current[-1].end]))
            current = []
        else:
            current.append(token)
    return out


# --- parsing ----------------------------------------------------------------------------


class _Cursor:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens, self.i = tokens, 0

    def peek(self, ahead: int = 0) -> _Token | None:
        at = self.i + ahead
        return self.tokens[at] if at < len(self.tokens) else None

    def accept(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and token.is_word(*words):
            self.i += 1
            return True
        return False

    def accept_punct(self, char: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == char:
            self.i += 1
            return True
        return False

    def accept_if_exists(self) -> None:
        token, following = self.peek(), self.peek(1)
        if token and following and token.is_word("IF") and following.is_word("EXISTS"):
            self.i += 2

    def accept_wait(self) -> None:
        """MariaDB's lock-wait option after a table name: WAIT n | NOWAIT."""
        if self.accept("WAIT"):
            self.i += 1
        else:
            self.accept("NOWAIT")

    def name(self) -> str | None:
        """A possibly qualified name (`db`.`t`): the last part, which is what a model knows."""
        token = self.peek()
        if token is None or not token.is_name:
            return None
        self.i += 1
        name = token.text
        while (dot := self.peek()) and dot.kind == "punct" and dot.text == ".":
            part = self.peek(1)
            if part is None or not part.is_name:
                break
            self.i += 2
            name = part.text
        return name


# After DROP in an ALTER TABLE, these unquoted words start something other than a column.
_NOT_A_COLUMN = {
    "INDEX",
    "KEY",
    "PRIMARY",
    "FOREIGN",
    "CONSTRAINT",
    "CHECK",
    "PARTITION",
    "SYSTEM",
    "PERIOD",
}


def destructive_statements(sql: str, revision: str | None = None) -> list[Change]:
    """The drops, renames and column redefinitions in ``sql``, in order (one Change per
    affected table or column: one ALTER may carry several)."""
    changes: list[Change] = []
    for tokens, text in _statements(sql):
        for kind, table, column, new_name in _parse(_Cursor(tokens)):
            changes.append(Change(kind, table, column, text, new_name, revision))
    return changes


_Found = tuple[ChangeKind, str, str | None, str | None]


def _parse(cur: _Cursor) -> list[_Found]:
    if cur.accept("DROP"):
        return _drop(cur)
    if cur.accept("RENAME"):
        return _rename_tables(cur)
    if cur.accept("ALTER"):
        return _alter(cur)
    if cur.accept("CREATE"):
        return _create(cur)
    return []


def _drop(cur: _Cursor) -> list[_Found]:
    if cur.accept("TEMPORARY") or not cur.accept("TABLE", "TABLES"):
        return []
    cur.accept_if_exists()
    found: list[_Found] = []
    while (table := cur.name()) is not None:
        found.append(("drop_table", table, None, None))
        if not cur.accept_punct(","):
            break
    return found


def _rename_tables(cur: _Cursor) -> list[_Found]:
    if not cur.accept("TABLE", "TABLES"):
        return []
    cur.accept_if_exists()
    found: list[_Found] = []
    while (table := cur.name()) is not None:
        cur.accept_wait()
        if not cur.accept("TO") or (new := cur.name()) is None:
            break
        found.append(("rename_table", table, None, new))
        if not cur.accept_punct(","):
            break
    return found


def _create(cur: _Cursor) -> list[_Found]:
    if not (cur.accept("OR") and cur.accept("REPLACE")):
        return []
    if cur.accept("TEMPORARY") or not cur.accept("TABLE"):
        return []
    table = cur.name()
    return [] if table is None else [("drop_table", table, None, None)]


def _alter(cur: _Cursor) -> list[_Found]:
    while cur.accept("ONLINE", "OFFLINE", "IGNORE"):
        pass
    if not cur.accept("TABLE"):
        return []
    cur.accept_if_exists()
    table = cur.name()
    if table is None:
        return []
    cur.accept_wait()
    found: list[_Found] = []
    for clause in _clauses(cur.tokens[cur.i :]):
        found += _alter_clause(table, _Cursor(clause))
    return found


def _clauses(tokens: list[_Token]) -> list[list[_Token]]:
    """Split an ALTER's specification at top-level commas (not those inside a type's or a
    partition's parentheses)."""
    clauses: list[list[_Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.kind == "punct" and token.text == "(":
            depth += 1
        elif token.kind == "punct" and token.text == ")":
            depth = max(0, depth - 1)
        elif token.kind == "punct" and token.text == "," and depth == 0:
            clauses.append([])
            continue
        clauses[-1].append(token)
    return [clause for clause in clauses if clause]


def _alter_clause(table: str, cur: _Cursor) -> list[_Found]:
    if cur.accept("DROP"):
        explicit = cur.accept("COLUMN")
        cur.accept_if_exists()
        token = cur.peek()
        if not explicit and token is not None and token.is_word(*_NOT_A_COLUMN):
            return []
        column = cur.name()
        return [] if column is None else [("drop_column", table, column, None)]
    if cur.accept("RENAME"):
        if cur.accept("INDEX", "KEY"):
            return []
        if cur.accept("COLUMN"):
            old = cur.name()
            if old is None or not cur.accept("TO") or (new := cur.name()) is None:
                return []
            return [("rename_column", table, old, new)]
        cur.accept("TO", "AS")
        new_table = cur.name()
        return [] if new_table is None else [("rename_table", table, None, new_table)]
    if cur.accept("CHANGE"):
        cur.accept("COLUMN")
        cur.accept_if_exists()
        old, new = cur.name(), cur.name()
        if old is None or new is None:
            return []
        if old.casefold() == new.casefold():
            return [("modify_column", table, old, None)]
        return [("rename_column", table, old, new)]
    if cur.accept("MODIFY"):
        cur.accept("COLUMN")
        cur.accept_if_exists()
        column = cur.name()
        return [] if column is None else [("modify_column", table, column, None)]
    return []


# --- judging ----------------------------------------------------------------------------


def contract_violations(
    changes: Iterable[Change | tuple[str, Change]], live_schema: Mapping[str, list[str]]
) -> list[str]:
    """One sentence per change that touches a table or column the live release uses.

    Each change is a Change (its ``revision`` names it in the sentence) or a pair
    ``(revision, change)``, for callers that keep the revision beside it.

    Tables and columns the live release does not know were expanded by a newer release, so
    dropping or renaming them is nobody's contract. Names compare case-insensitively (as
    MariaDB compares column names), which errs towards reporting."""
    live = {
        table.casefold(): (table, {column.casefold() for column in columns})
        for table, columns in live_schema.items()
    }
    sentences: list[str] = []
    for item in changes:
        revision, change = item if isinstance(item, tuple) else (item.revision, item)
        known = live.get(change.table.casefold())
        if known is None:
            continue
        table, columns = known
        prefix = f"revision {revision} " if revision else ""
        if change.column is None:
            verb = "drops" if change.kind == "drop_table" else "renames"
            target = f" to {change.new_name}" if change.kind == "rename_table" else ""
            sentences.append(
                f"{prefix}{verb} table {table}{target}, which the live release still uses"
            )
            continue
        if change.column.casefold() not in columns:
            continue
        column = f"{table}.{change.column}"
        if change.kind == "drop_column":
            sentences.append(f"{prefix}drops column {column}, which the live release still uses")
        elif change.kind == "rename_column":
            sentences.append(
                f"{prefix}renames column {column} to {change.new_name},"
                " which the live release still uses"
            )
        else:
            sentences.append(
                f"{prefix}redefines column {column}, which the live release still uses"
                " (a narrower type or a new NOT NULL breaks it)"
            )
    return sentences


def pending_violations(
    revisions: Iterable[Mapping[str, str]], live_schema: Mapping[str, list[str]]
) -> list[str]:
    """``contract_violations`` over the ``revisions`` of ``migrate pending`` output."""
    changes = [
        change
        for pending in revisions
        for change in destructive_statements(pending["sql"], pending["revision"])
    ]
    return contract_violations(changes, live_schema)
