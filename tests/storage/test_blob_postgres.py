"""The blob store contract in a PostgreSQL run database."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from tests.conftest import POSTGRES_URL, require_postgres
from tests.pg import fresh_schema_url
from tests.storage.blob_database import OnStore


@pytest.mark.postgres
class TestPostgresBlobStore(OnStore):
    urls: ClassVar[dict[str, str]] = {}

    def url(self, place: Path) -> str:
        require_postgres()
        # One schema per test directory: a store reopened on the same place finds its bytes.
        return self.urls.setdefault(str(place), fresh_schema_url(POSTGRES_URL))
