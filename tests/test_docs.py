"""The documentation cannot rot: every ``python`` code block in the README and in docs/ runs,
the README's links lead somewhere, and the site (with its API reference generated from the
docstrings) builds with mkdocs in strict mode."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import engine

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
                         tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # As in a script: sys.argv[0] is the file that runs (the source a run records; it lies
    # beside the working directory, not in it), and print writes to descriptor 1 (pytest's
    # sys.stdout does not), where a run capturing its output sees it.
    script = tmp_path_factory.mktemp("script") / "train.py"
    script.write_text(code)
    monkeypatch.setattr(sys, "argv", [str(script)])
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


# What the docs may not say -------------------------------------------------------------------

CITATION = re.compile(r"\bSPEC\b|§|\b[Ii]ssues?\s*(?:#|No\.?\s*|number\s*)?\d+"
                      r"|(?<![\w&#/])#\d+\b")
"""A citation of the project's specification or of an issue: ``SPEC``, ``§``, ``issue 12``,
``issue #12``, ``#12``. (A link to another project's issue, ``…/issues/4126``, is none.)"""
PRIVATE_IMPORT = re.compile(r"^\s*(?:from|import)\s+engine\._|import_module\(\s*['\"]engine\._",
                            re.MULTILINE)
ANY_FENCE = re.compile(r"^(`{3,}|~{3,})[^\n]*\n(.*?)^\1", re.DOTALL | re.MULTILINE)


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _docstrings() -> list[tuple[str, str]]:
    """Every module, class and function docstring under engine/, with where it is."""
    found = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    line = getattr(node, "lineno", 1)
                    found.append((f"{path.relative_to(ROOT)}:{line}", doc))
    return found


@pytest.mark.parametrize("text", ["as SPEC.md says", "see SPEC 4.2", "§3.1", "issue 12",
                                  "issue #12", "Issues 3 and 4", "fixed in #123", "(#7)"])
def test_a_citation_is_recognised(text: str) -> None:
    assert CITATION.search(text)


@pytest.mark.parametrize("text", ["the spec of a file", "an issue with the cache",
                                  "https://github.com/mkdocs/mkdocs/issues/4126",
                                  "jobs.md#through-a-server", "&#8230;", "a #hashtag",
                                  "2**53", "step 12"])
def test_what_is_no_citation_is_let_be(text: str) -> None:
    assert not CITATION.search(text)


def test_no_page_cites_a_specification_or_an_issue() -> None:
    cited = []
    for page in _pages():
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if CITATION.search(line):
                cited.append(f"{page.relative_to(ROOT)}:{number}: {line.strip()}")
    assert cited == []


def test_no_docstring_cites_a_specification_or_an_issue() -> None:
    docstrings = _docstrings()
    assert len(docstrings) > 100
    assert [f"{where}: {CITATION.search(doc)[0]!r}"  # type: ignore[index]
            for where, doc in docstrings if CITATION.search(doc)] == []


def test_no_code_block_imports_a_private_module() -> None:
    found = []
    for page in _pages():
        text = page.read_text()
        for match in ANY_FENCE.finditer(text):
            for bad in PRIVATE_IMPORT.finditer(match.group(2)):
                line = text.count("\n", 0, match.start(2) + bad.start()) + 1
                found.append(f"{page.relative_to(ROOT)}:{line}: {bad.group(0).strip()}")
    assert found == []
    assert PRIVATE_IMPORT.search("x = 1\nfrom engine._core.model import RunState\n")
    assert PRIVATE_IMPORT.search("import engine._runtime.tracker as t")
    assert not PRIVATE_IMPORT.search("import engine\nfrom engine import sync\n")


# The API reference ---------------------------------------------------------------------------

DIRECTIVE = re.compile(r"^::: (engine(?:\.\w+)+)\n((?:[ \t]+.*\n|\n(?=[ \t]))*)", re.MULTILINE)
INTERNAL = {
    # Called by the engine itself (liveness, captures, the tracker's close), not by users;
    # the attributes are the class docstring's ``:ivar`` fields.
    "Run": {"halt", "request_abort", "raise_on_abort", "record_env", "record_line",
            "record_system", "record_uploads", "project", "run_id", "name",
            "started_position"},
    "Subscription": {"end", "offer", "wake"},
}


def _reference() -> dict[str, list[str] | None]:
    """What ``:::`` directives the reference pages render: each object, with the members its
    options list (None: the object's own choice)."""
    shown: dict[str, list[str] | None] = {}
    for page in sorted((ROOT / "docs" / "reference").glob("*.md")):
        for match in DIRECTIVE.finditer(page.read_text() + "\n"):
            listed = re.findall(r"^\s+- (\w+)\s*$", match.group(2), re.MULTILINE)
            shown[match.group(1)] = listed or None
    return shown


def test_the_reference_shows_every_public_name() -> None:
    shown = _reference()
    modules = {"errors", "sync"}  # pages of their own
    assert [f"engine.{name}" for name in engine.__all__
            if name not in modules and f"engine.{name}" not in shown] == []
    assert {"engine.sync", "engine.errors"} <= shown.keys()


@pytest.mark.parametrize("cls", [engine.Tracker, engine.Run, engine.Subscription])
def test_the_reference_lists_every_public_member(cls: type) -> None:
    listed = _reference()[f"engine.{cls.__name__}"]
    assert listed is not None
    public = {name for name in dir(cls) if not name.startswith("_")}
    assert sorted(public - set(listed) - INTERNAL.get(cls.__name__, set())) == []
    assert sorted(set(listed) - public) == []  # nothing listed that is not there


def test_the_reference_shows_the_run_without_a_block_and_edit_run() -> None:
    shown = _reference()
    assert "engine.init" in shown
    assert "engine.EditContext" in shown
    assert {"edit_run"} <= set(shown["engine.Tracker"] or ())
    assert {"finish", "abort_reason"} <= set(shown["engine.Run"] or ())


# The command line as the docs spell it -------------------------------------------------------

def test_the_cli_page_lists_each_command_once() -> None:
    rows = re.findall(r"^\| `([a-z]+(?: [a-z]+)?)\b[^`]*`", (ROOT / "docs" / "cli.md").read_text(),
                      re.MULTILINE)
    commands = [" ".join(w for w in row.split() if w.islower()) for row in rows]
    assert len(commands) > 20
    assert sorted({c for c in commands if commands.count(c) > 1}) == []


def test_the_query_page_command_lines_run_as_printed(tmp_path: Path) -> None:
    """The commands under "Command line" in docs/queries.md, typed into a shell as they are
    printed (a descending ``--order-by -FIELD`` among them), against runs they can find."""
    text = (ROOT / "docs" / "queries.md").read_text()
    block = text[text.index("## Command line"):]
    block = block[block.index("```\n") + 4:]
    block = block[:block.index("```")]
    commands = [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    assert any("--order-by -" in c for c in commands)
    assert not any("--order-by=-" in c for c in commands)
    with engine.sync.connect(str(tmp_path / "kittiwake.db"), durability="normal") as tracker:
        for k, (optimizer, acc) in enumerate((("adam", 0.8), ("sgd", 0.95), ("adam", 0.97))):
            with tracker.start_run(f"run-{k + 1}", tags=("baseline",) if k else (),
                                   config={"optimizer": optimizer, "lr": 0.1 / (k + 1)}) as run:
                run.log_metrics({"train/acc": acc, "train/loss": 1 - acc, "loss": 1 - acc},
                                step=0)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    env.pop("COLUMNS", None)
    outputs = {}
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout or "> runs.csv" in command, command
        outputs[command] = done.stdout
    ordered = next(out for c, out in outputs.items() if "--order-by -" in c)
    listed = [line.split()[0] for line in ordered.splitlines()[2:] if line.startswith("run-")]
    assert listed == ["run-3", "run-2", "run-1"]  # acc descending
    assert (tmp_path / "runs.csv").read_text().startswith("run_id,")
