"""Blob stores: the bytes of a run's files, addressed by their SHA-256 digest.

Holds the contract every blob store keeps (``contract``), the directory store
(``directory``, for ``blobs="DIR"``), and reading a file source into chunks off the event
loop (``sources``). Stores in the run database implement the same contract.

May import ``engine._core`` and ``engine.errors``; the log stores never import a blob
store, and a blob store never imports a log store.
"""
