"""The documentation cannot rot: every ``python`` code block in the README and in docs/ runs,
the README's links lead somewhere, and the site (with its API reference generated from the
docstrings) builds with mkdocs in strict mode."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _blocks() -> list[tuple[str, str]]:
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            found.append((f"{page.relative_to(ROOT)}:{line}", match.group(1)))
    return found


@pytest.mark.parametrize(("where", "code"), _blocks(), ids=[w for w, _ in _blocks()])
def test_code_block_runs(where: str, code: str, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # As in a script, print writes to descriptor 1 (pytest's sys.stdout does not), where a
    # run capturing its output sees it.
    with open(1, "w", closefd=False, buffering=1) as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        exec(compile(code, where, "exec"), {"__name__": "__main__"})


def test_the_docs_have_code_to_run() -> None:
    pages = {where.split(":")[0] for where, _ in _blocks()}
    assert {"README.md", "docs/getting-started.md"} <= pages


def test_the_readme_links_to_files_that_exist() -> None:
    # The site checks the links of docs/; the README is read on its own, from the repository.
    targets = [t for t in LINK.findall((ROOT / "README.md").read_text()) if "://" not in t]
    assert targets
    assert [t for t in targets if not (ROOT / t).exists()] == []


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    """Any warning fails the build: a broken link, anchor or cross-reference, a docstring
    field that names no parameter, a page left out of the navigation."""
    pytest.importorskip("mkdocstrings_handlers.python")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert built.returncode == 0, built.stderr
    assert "WARNING" not in built.stderr, built.stderr
