"""The runs-table query language's lexer: text to tokens, each with its position.

A field token carries its head (``metrics``) and its parts, each bare (letters, digits,
``_``, ``/`` and ``-``: ``train/loss``) or in backticks with a doubled backtick inside
(```a.b``c```). Strings take single or double quotes with the quote doubled inside.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import QuerySyntaxError

from .tree import bare_char

__all__ = ["KEYWORDS", "OPERATORS", "FieldParts", "Lexer", "Token"]

KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "exists", "true", "false", "null",
                      "nan", "inf"})
OPERATORS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">",
             ">=": ">="}


FieldParts = tuple[str, list[tuple[str, int]]]
"""What a field token holds: its head (``metrics``) and its parts, each with its position."""


@dataclass(frozen=True, slots=True)
class Token:
    """One token and where it starts."""

    kind: str  # field, word, string, number, op, (, ), ",", -, end
    text: str  # the source text (a keyword lower-cased)
    pos: int
    value: str | int | float | FieldParts | None = None  # a string's, number's or field's


class Lexer:
    """Splits a query into tokens; a field with its parts (``metrics.`a b`.min``) is one
    token, so names may hold characters that elsewhere are operators."""

    def __init__(self, query: str) -> None:
        self.q = query
        self.i = 0

    def fail(self, message: str, pos: int) -> QuerySyntaxError:
        return QuerySyntaxError(message, self.q, pos)

    def tokens(self) -> list[Token]:
        """Every token of the query, ending with an ``end`` token.

        :raises QuerySyntaxError: for a NUL anywhere in the query — no name or value in the
            log can hold one (PostgreSQL's text cannot), so both backends refuse it here alike.
        """
        nul = self.q.find("\x00")
        if nul >= 0:
            raise self.fail("a query cannot hold NUL ('\\x00')", nul)
        out = []
        while True:
            token = self._next()
            out.append(token)
            if token.kind == "end":
                return out

    def _next(self) -> Token:
        q, n = self.q, len(self.q)
        while self.i < n and q[self.i].isspace():
            self.i += 1
        start = self.i
        if start >= n:
            return Token("end", "", start)
        ch = q[start]
        if ch.isalpha() or ch == "_":
            return self._word()
        if ch.isdigit() or (ch == "." and start + 1 < n and q[start + 1].isdigit()):
            return self._number()
        if ch in "'\"":
            self.i, text = self._quoted(start, ch, "string")
            return Token("string", q[start:self.i], start, text)
        if ch == "`":
            raise self.fail("a backticked name must follow a field such as config. or "
                            "metrics.", start)
        two = q[start:start + 2]
        if two in OPERATORS:
            self.i += 2
            return Token("op", OPERATORS[two], start)
        if ch in OPERATORS:
            self.i += 1
            return Token("op", OPERATORS[ch], start)
        if ch in "(),-":
            self.i += 1
            return Token(ch, ch, start)
        raise self.fail(f"unexpected character {ch!r}", start)

    def _quoted(self, start: int, quote: str, what: str) -> tuple[int, str]:
        """Read a quoted run from ``start`` (a doubled quote stands for one); returns the
        index after it and the text inside."""
        q, i, parts = self.q, start + 1, []
        while True:
            end = q.find(quote, i)
            if end < 0:
                raise self.fail(f"unterminated {what}: add the closing {quote}", start)
            parts.append(q[i:end])
            if q.startswith(quote * 2, end):
                parts.append(quote)
                i = end + 2
                continue
            text = "".join(parts)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise self.fail(f"the {what} is not valid Unicode text", start) from None
            return end + 1, text

    def _word(self) -> Token:
        q, n, start = self.q, len(self.q), self.i
        while self.i < n and (q[self.i].isalnum() or q[self.i] == "_"):
            self.i += 1
        head = q[start:self.i]
        segments: list[tuple[str, int]] = []
        while self.i < n and q[self.i] == ".":
            self.i += 1
            seg_start = self.i
            if self.i < n and q[self.i] == "`":
                self.i, name = self._quoted(self.i, "`", "name")
                if not name:
                    raise self.fail("a backticked name is empty", seg_start)
            else:
                while self.i < n and bare_char(q[self.i]):
                    self.i += 1
                name = q[seg_start:self.i]
                if not name:
                    raise self.fail("expected a name after '.' (use backticks for unusual "
                                    "characters)", seg_start)
            segments.append((name, seg_start))
        if not segments and head.lower() in KEYWORDS:
            return Token("word", head.lower(), start)
        return Token("field", q[start:self.i], start, (head, segments))

    def _number(self) -> Token:
        q, n, start = self.q, len(self.q), self.i
        while self.i < n and q[self.i].isdigit():
            self.i += 1
        is_float = False
        if self.i < n and q[self.i] == ".":
            is_float = True
            self.i += 1
            while self.i < n and q[self.i].isdigit():
                self.i += 1
        if self.i < n and q[self.i] in "eE":
            j = self.i + 1
            if j < n and q[j] in "+-":
                j += 1
            if j < n and q[j].isdigit():
                is_float = True
                self.i = j
                while self.i < n and q[self.i].isdigit():
                    self.i += 1
        if self.i < n and (q[self.i].isalnum() or q[self.i] in "_."):
            raise self.fail(f"unexpected character {q[self.i]!r} in a number", self.i)
        text = q[start:self.i]
        if not text.isascii():
            raise self.fail(f"{text!r} is not a number: use the digits 0-9", start)
        # Python refuses to read ints of thousands of digits; past 64 bits a float will do.
        value: int | float = float(text) if is_float or len(text) > 19 else int(text)
        if isinstance(value, int) and value >= 2**63:
            value = float(value)  # beyond a 64-bit integer: compare as a float
        return Token("number", text, start, value)
