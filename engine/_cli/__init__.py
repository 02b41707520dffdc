"""The ``kittiwake`` command: argument parsing and errors (``main``), the runs-table
commands (``runs``), ``tail``, the demo, and terminal output (``display``).

May import every layer below it and the public facade; nothing imports it but the
``kittiwake`` entry point.
"""
