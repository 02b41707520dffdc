"""The runs-table query language: text in, SQL with bound values out.

Holds the lexer (``lexer``), the recursive-descent parser (``parser``), the tree, orderings
and selections (``tree``), the literal checks (``checks``), the compiler to SQL (``sql``) for
each SQL dialect (``dialect``), plans beyond one statement (``plans``), running compiled
statements through a backend's fetch (``execute``), and flat exports of runs (``export``).

May import ``engine._core``, ``engine._projections`` and ``engine.errors``; it runs
statements only through a ``fetch`` its caller passes, never on a connection of its own.
"""
