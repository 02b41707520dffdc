"""The runs-table query language (docs/queries.md): a recursive-descent parser over the
tokens of ``lexer``.

``parse_where`` turns text such as ``metrics.train/acc > 0.9 and config.`opt/name` = 'adam'``
into a tree of ``tree`` nodes; ``parse_order`` and ``parse_fields`` read orderings and
field lists. Every mistake raises ``QuerySyntaxError`` with the 0-based position of the problem,
and every literal is checked against its field as it is read (``checks``), so a tree
that parsed always compiles. Nothing is evaluated: the tree is compiled to SQL with bound
values by ``sql``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence

from engine._core.content import ENV_PREFIX
from engine.errors import QuerySyntaxError, ValidationError

from .checks import check
from .lexer import Lexer, Token
from .tree import (
    AGGREGATES,
    RUN_FIELDS,
    TIME_FIELDS,
    And,
    Compare,
    Contains,
    Exists,
    Field,
    In,
    Node,
    Not,
    Or,
    OrderKey,
    Selection,
    Value,
)

__all__ = ["COLUMN_FIELDS", "MAX_GROUP_FIELDS", "MAX_ORDER_FIELDS", "parse_aggregates",
           "parse_fields", "parse_group_by", "parse_order", "parse_where", "selection"]

MAX_DEPTH = 64  # nested parentheses and `not`s: deeper trees are refused, not recursed into
MAX_GROUP_FIELDS = 8  # each grouping field on a config path is one more join
MAX_ORDER_FIELDS = 16  # each ordering field on a config or metric is one more join (SQLite
#                        joins at most 64 tables)
MAX_TERMS = 1000  # comparisons plus listed values: keeps every statement far from the driver's
#                   limit on bound parameters (SQLite: 32766)
_HEADS = (*RUN_FIELDS, "tags", "config", "env", "metrics")
_CONSTANTS: dict[str, Value] = {"true": True, "false": False, "null": None, "nan": math.nan,
                                "inf": math.inf}
# Columns a table may show that the `where` language does not filter on.
COLUMN_FIELDS = ("project", "status_reason", "fork_run_id", "fork_step", "deleted", "version",
                 "position")


class _Parser:
    def __init__(self, query: str) -> None:
        self.q = query
        self.tokens = Lexer(query).tokens()
        self.k = 0
        self.terms = 0

    # Helpers ---------------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.k]

    def fail(self, message: str, pos: int | None = None) -> QuerySyntaxError:
        return QuerySyntaxError(message, self.q, self.tok.pos if pos is None else pos)

    def take(self) -> Token:
        token = self.tokens[self.k]
        if token.kind != "end":
            self.k += 1
        return token

    def at_word(self, *words: str) -> bool:
        return self.tok.kind == "word" and self.tok.text in words

    def expect(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise self.fail(f"expected {what}, found {self._found()}")
        return self.take()

    def _found(self) -> str:
        token = self.tok
        return "the end of the query" if token.kind == "end" else repr(token.text)

    def count_term(self, pos: int) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.fail(f"the query is too large: at most {MAX_TERMS} comparisons and "
                            "listed values", pos)

    def end(self) -> None:
        if self.tok.kind != "end":
            raise self.fail(f"unexpected {self._found()}; expected and, or, or the end")

    # Fields ----------------------------------------------------------------------------------

    def field(self, *, allow: tuple[str, ...], columns: bool = False) -> tuple[Field, int]:
        """A field token as a ``Field``; ``allow`` names the kinds this place accepts."""
        if self.tok.kind != "field":
            raise self.fail(f"expected a field such as name, config.<path> or "
                            f"metrics.<name>, found {self._found()}")
        token = self.take()
        assert isinstance(token.value, tuple)  # the lexer gives every field its parts
        head, segments = token.value
        pos = token.pos
        known = (*_HEADS, *COLUMN_FIELDS) if columns else _HEADS
        if head not in known:
            close = difflib.get_close_matches(head, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; fields are {', '.join(_HEADS)}"
            raise self.fail(f"unknown field {head!r}{hint}", pos)
        if head == "config":
            found = self._config(segments, pos)
        elif head == "env":
            path = self._config(segments, pos, "env")
            found = Field("config", ENV_PREFIX + path.name)
        elif head == "metrics":
            found = self._metric(segments, pos)
        else:
            if segments:
                raise self.fail(f"{head} has no parts: remove '.{segments[0][0]}'",
                                segments[0][1] - 1)
            found = Field("tags", "tags") if head == "tags" else Field("run", head)
        if found.kind not in allow:
            raise self.fail(f"{found} cannot be used here", pos)
        return found, pos

    def _config(self, segments: list[tuple[str, int]], pos: int,
                head: str = "config") -> Field:
        if not segments:
            example = "config.optimizer/lr" if head == "config" else "env.git/commit"
            raise self.fail(f"expected {head}.<path>, such as {example}", pos + len(head) + 1)
        if len(segments) > 1:
            raise self.fail(f"a {head} path has one part after '{head}.': write "
                            f"{head}.a/b for nested keys, or backtick a key that has a '.'",
                            segments[1][1] - 1)
        return Field("config", segments[0][0])

    def _metric(self, segments: list[tuple[str, int]], pos: int) -> Field:
        if not segments:
            raise self.fail("expected metrics.<name>, such as metrics.train/loss", pos + 7)
        if len(segments) > 2:
            raise self.fail("too many parts: metrics.<name>[.last|.min|.max|.count|"
                            ".last_step]; backtick a name that has a '.'", segments[2][1] - 1)
        aggregate = "last"
        if len(segments) == 2:
            aggregate, agg_pos = segments[1]
            if aggregate not in AGGREGATES:
                raise self.fail(f"unknown aggregate {aggregate!r}: use one of "
                                f"{', '.join(AGGREGATES)}, or backtick a name that has a '.'",
                                agg_pos)
        return Field("metric", segments[0][0], aggregate)

    # `where` ---------------------------------------------------------------------------------

    # Trees come out simplified: ``a or (b or c)`` is one ``or`` of three, ``not not a`` is
    # ``a``. Both mean the same in two-valued logic, and the SQL then nests only where the
    # query alternates ``and`` and ``or``.

    def disjunction(self, depth: int) -> Node:
        items = _flat(Or, [self.conjunction(depth)])
        while self.at_word("or"):
            self.take()
            items += _flat(Or, [self.conjunction(depth)])
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self, depth: int) -> Node:
        items = _flat(And, [self.negation(depth)])
        while self.at_word("and"):
            self.take()
            items += _flat(And, [self.negation(depth)])
        return items[0] if len(items) == 1 else And(tuple(items))

    def negation(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.fail(f"the query nests deeper than {MAX_DEPTH} levels (parentheses "
                            "and nots)")
        if self.at_word("not"):
            self.take()
            inner = self.negation(depth + 1)
            return inner.item if isinstance(inner, Not) else Not(inner)
        if self.tok.kind == "(":
            self.take()
            inner = self.disjunction(depth + 1)
            self.expect(")", "')'")
            return inner
        return self.predicate()

    def predicate(self) -> Node:
        field, pos = self.field(allow=("run", "tags", "config", "metric"))
        self.count_term(pos)
        token = self.tok
        if token.kind == "op":
            self.take()
            op = token.text
            value, at = self.value()
            return Compare(field, op, check(field, op, value, at, self.fail))
        negated = self.at_word("not")
        if negated:
            self.take()
            if self.at_word("exists"):
                self.take()
                return Not(Exists(field))
            if not self.at_word("in"):
                raise self.fail(f"expected in or exists after not, found {self._found()}")
        if self.at_word("in"):
            self.take()
            return In(field, self.value_list(field), negated)
        if self.at_word("contains"):
            self.take()
            value, at = self.value()
            if not isinstance(value, str):
                raise self.fail("contains takes a string, such as 'adam'", at)
            if field.kind in ("metric",) or field.name in TIME_FIELDS:
                raise self.fail(f"{field} is a number: contains works on text, config values "
                                "and tags", pos)
            return Contains(field, value)
        if self.at_word("exists"):
            self.take()
            return Exists(field)
        raise self.fail(f"expected an operator (= != < <= > >= in, not in, contains, "
                        f"exists) after {field}, found {self._found()}")

    def value_list(self, field: Field) -> tuple[Value, ...]:
        self.expect("(", "'(' to open the list of values")
        values = []
        while True:
            value, at = self.value()
            self.count_term(at)
            values.append(check(field, "=", value, at, self.fail))
            if self.tok.kind == ",":
                self.take()
                if self.tok.kind == ")":
                    break
                continue
            break
        self.expect(")", "',' or ')'")
        return tuple(values)

    def value(self) -> tuple[Value, int]:
        token = self.tok
        if token.kind in ("string", "number"):
            self.take()
            assert not isinstance(token.value, tuple)  # only a field's value is a tuple
            return token.value, token.pos
        if token.kind == "-":
            self.take()
            nxt = self.tok
            if nxt.kind == "number":
                self.take()
                assert isinstance(nxt.value, (int, float))
                return -nxt.value, token.pos
            if nxt.kind == "word" and nxt.text == "inf":
                self.take()
                return -math.inf, token.pos
            raise self.fail("expected a number after '-'")
        if token.kind == "word" and token.text in _CONSTANTS:
            self.take()
            return _CONSTANTS[token.text], token.pos
        raise self.fail(f"expected a value (a 'string', a number, true, false, null, nan or "
                        f"inf), found {self._found()}")

    # Orderings and field lists ----------------------------------------------------------------

    def order(self) -> tuple[OrderKey, ...]:
        keys: list[OrderKey] = []
        while True:
            descending = False
            if len(keys) == MAX_ORDER_FIELDS:
                raise self.fail(f"order by at most {MAX_ORDER_FIELDS} fields")
            if self.tok.kind == "-":
                self.take()
                descending = True
            field, _ = self.field(allow=("run", "config", "metric"))
            word = self.tok.text.lower() if self.tok.kind == "field" else ""
            if word in ("asc", "desc"):  # SQL's spelling, handy where a leading '-' is not
                if descending:
                    raise self.fail(f"{word} after '-': use one or the other")
                self.take()
                descending = word == "desc"
            keys.append(OrderKey(field, descending))
            if self.tok.kind != ",":
                break
            self.take()
        self.end()
        return tuple(keys)

    def fields(self, allow: tuple[str, ...], columns: bool) -> tuple[Field, ...]:
        found: list[Field] = []
        while True:
            field, _ = self.field(allow=allow, columns=columns)
            found.append(field)
            if self.tok.kind != ",":
                break
            self.take()
        self.end()
        return tuple(found)


def _flat(kind: type[And] | type[Or], items: list[Node]) -> list[Node]:
    """``items`` with each ``kind`` node among them replaced by its own items."""
    out: list[Node] = []
    for item in items:
        out.extend(item.items if isinstance(item, kind) else (item,))
    return out


def parse_where(query: str) -> Node | None:
    """The tree of a ``where`` query (None for an empty one).

    :raises QuerySyntaxError: with the position of the first problem.
    """
    if not isinstance(query, str):
        raise QuerySyntaxError(f"where takes a string (a query), not {type(query).__name__}",
                               "", 0)
    parser = _Parser(query)
    if parser.tok.kind == "end":
        return None
    node = parser.disjunction(0)
    parser.end()
    return node


def _join(text: str | Sequence[str], what: str) -> str:
    """A field list as one text: a string as it is, a list of strings joined by commas.

    Anything else is refused as a ``QuerySyntaxError``, as a ``where`` that is not text is:
    every query argument fails with one type, whatever is wrong with it.
    """
    if isinstance(text, str):
        return text
    if not isinstance(text, Sequence) or isinstance(text, (bytes, bytearray)):
        raise QuerySyntaxError(f"{what} takes a string or a list of strings, not "
                               f"{type(text).__name__}", "", 0)
    for i, item in enumerate(text):
        if not isinstance(item, str):
            raise QuerySyntaxError(f"{what} takes strings: item {i} is "
                                   f"{type(item).__name__} {item!r}", "", 0)
    return ", ".join(text)


def parse_order(order_by: str | Sequence[str] | None) -> tuple[OrderKey, ...]:
    """An ordering such as ``"-metrics.loss.min, created_at"``: ``-`` (or a trailing
    ``desc``) for descending.

    :raises QuerySyntaxError: with the position of the first problem.
    """
    if order_by is None:
        return ()
    text = _join(order_by, "order_by")
    parser = _Parser(text)
    if parser.tok.kind == "end":
        return ()
    return parser.order()


def parse_fields(text: str | Sequence[str], *, allow: tuple[str, ...] = ("run", "tags",
                 "config", "metric"), columns: bool = False, what: str = "fields"
                 ) -> tuple[Field, ...]:
    """A comma-separated list of fields, such as ``"experiment, config.optimizer"``.

    ``allow`` names the kinds of field accepted; with ``columns``, table-only columns such as
    ``status_reason`` are accepted too.

    :raises QuerySyntaxError: with the position of the first problem.
    """
    joined = _join(text, what)
    parser = _Parser(joined)
    if parser.tok.kind == "end":
        raise QuerySyntaxError(f"expected at least one field in {what}", joined, 0)
    return parser.fields(allow, columns)


def parse_group_by(by: str | Sequence[str]) -> tuple[Field, ...]:
    """Grouping fields: run fields and config paths, each once, at most ``MAX_GROUP_FIELDS``.

    :raises QuerySyntaxError: with the position of the first problem.
    """
    fields = tuple(dict.fromkeys(parse_fields(by, allow=("run", "config"), what="by")))
    if len(fields) > MAX_GROUP_FIELDS:
        raise QuerySyntaxError(f"group by at most {MAX_GROUP_FIELDS} fields",
                               _join(by, "by"), 0)
    return fields


def parse_aggregates(aggregates: str | Sequence[str] | None) -> tuple[Field, ...] | None:
    """Metric aggregates such as ``"metrics.loss.min, metrics.acc"`` (None stays None: every
    metric's ``last``; an empty sequence asks for none).

    :raises QuerySyntaxError: with the position of the first problem.
    """
    if aggregates is None:
        return None
    if not isinstance(aggregates, str) and not _join(aggregates, "aggregates"):
        return ()
    return tuple(dict.fromkeys(parse_fields(aggregates, allow=("metric",),
                                            what="aggregates")))


def selection(where: str | None, order_by: str | Sequence[str] | None, limit: int | None,
              offset: int, heads_only: bool) -> Selection:
    """``list_runs``' arguments, checked and parsed.

    :raises QuerySyntaxError: for a ``where`` or ``order_by`` that does not parse.
    :raises ValidationError: for a bad ``limit``, ``offset`` or ``heads_only``.
    """
    if limit is not None and (type(limit) is not int or not 0 <= limit < 2**63):
        raise ValidationError(f"limit must be an int >= 0 or None, not {limit!r}", key="limit")
    if type(offset) is not int or not 0 <= offset < 2**63:
        raise ValidationError(f"offset must be an int >= 0, not {offset!r}", key="offset")
    if type(heads_only) is not bool:
        raise ValidationError(f"heads_only must be a bool, not {heads_only!r}",
                              key="heads_only")
    return Selection(None if where is None else parse_where(where), parse_order(order_by),
                     limit, offset, heads_only)
