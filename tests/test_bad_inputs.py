"""Every mistake a user can make in a model file is reported where it is, with its own message.

Each file in ``tests/bad/`` is a small model with one kind of mistake (or several
independent ones) and says at its top what must be reported::

    # expect: LINE:COL: key phrase
    # expect-warning: LINE:COL: key phrase

LINE and COL count in the fixture itself, these comment lines included. The key
phrase must occur in the diagnostic's message or hint; several phrases joined by
`` | `` must all occur in the same diagnostic. The reported diagnostics must match
the expectations one to one: nothing missing, nothing extra. A fixture expects
either errors (the file does not compile) or only warnings (it compiles).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import odedsl
from odedsl.cli import main as cli_main
from odedsl.errors import Diagnostic

ROOT = Path(__file__).resolve().parents[1]
BAD = sorted((ROOT / "tests" / "bad").glob("*.ode"))
MODELS = sorted((ROOT / "models").glob("*.ode"))
EXPECT = re.compile(r"#\s*expect(-warning)?:\s*(\d+):(\d+):\s*(.*\S)\s*$")
LOOKS_LIKE_EXPECT = re.compile(r"\s*#\s*expect\S*\s*:")


@dataclass(frozen=True)
class Expect:
    warning: bool
    line: int
    column: int
    phrases: tuple[str, ...]

    def __str__(self) -> str:
        kind = "expect-warning" if self.warning else "expect"
        return f"{kind}: {self.line}:{self.column}: {' | '.join(self.phrases)}"


def expectations(path: Path) -> list[Expect]:
    """The ``# expect`` lines of a fixture; they must all sit in its leading comment block."""
    found = []
    in_header = True
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        in_header = in_header and text.startswith("#")
        m = EXPECT.match(text)
        if m is None:
            assert not LOOKS_LIKE_EXPECT.match(text), f"{path.name}:{number}: malformed expect line: {text!r}"
            continue
        assert in_header, f"{path.name}:{number}: expect lines belong at the top of the file"
        phrases = tuple(p.strip() for p in m.group(4).split(" | "))
        found.append(Expect(m.group(1) is not None, int(m.group(2)), int(m.group(3)), phrases))
    return found


def _fits(e: Expect, d: Diagnostic) -> bool:
    text = d.message + "\n" + (d.hint or "")
    return (d.span.line, d.span.column) == (e.line, e.column) and all(p in text for p in e.phrases)


def unmatched(expects: list[Expect], diagnostics: list[Diagnostic]) -> tuple[list[Expect], list[Diagnostic]]:
    """A one-to-one matching of expectations to diagnostics; returns what is left on each side."""
    owner: dict[int, int] = {}  # diagnostic index -> expectation index

    def assign(i: int, seen: set[int]) -> bool:  # augmenting path (Kuhn's algorithm)
        for j, d in enumerate(diagnostics):
            if j not in seen and _fits(expects[i], d):
                seen.add(j)
                if j not in owner or assign(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    missing = [e for i, e in enumerate(expects) if not assign(i, set())]
    extra = [d for j, d in enumerate(diagnostics) if j not in owner]
    return missing, extra


#: Grammar-internal names that must never reach a user.
INTERNAL_NAMES = ("__ANON", "$END", "_NL", "LPAR", "RPAR", "LSQB", "RSQB", "NUMBER", "COMPARE", "BAD_CHAR",
                  "UNCLOSED_STRING", "Token(", "Tree(")


def assert_reported(path: Path, expects: list[Expect], diagnostics: list[Diagnostic]) -> None:
    for d in diagnostics:
        for text in (d.message, d.hint or ""):
            assert text == text.strip() and "  " not in text, f"stray spaces in {text!r}"
            assert not any(name in text for name in INTERNAL_NAMES), text
    missing, extra = unmatched(expects, diagnostics)
    if missing or extra:
        lines = [f"{path.name}: diagnostics do not match the expect lines"]
        lines += [f"  missing  {e}" for e in missing]
        lines += [f"  extra    {d.format()}" for d in extra]
        pytest.fail("\n".join(lines))


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("ODEDSL_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "odedsl", "check", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture(scope="module")
def cli_run_of_error_fixtures() -> subprocess.CompletedProcess:
    """One ``odedsl check`` process over every error fixture (one process per file would be slow)."""
    paths = [_shown(p) for p in BAD if any(not e.warning for e in expectations(p))]
    return _cli(*paths)


@pytest.fixture(scope="module")
def cli_run_of_warning_fixtures() -> subprocess.CompletedProcess:
    paths = [_shown(p) for p in BAD if expectations(p) and all(e.warning for e in expectations(p))]
    return _cli(*paths)


def test_there_are_fixtures():
    assert len(BAD) >= 60
    assert MODELS


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_fixture_reports_exactly_what_it_expects(path: Path):
    expects = expectations(path)
    errors = [e for e in expects if not e.warning]
    warnings = [e for e in expects if e.warning]
    assert expects, f"{path.name} has no '# expect:' lines"
    if errors:
        assert not warnings, "warnings are not reported alongside errors; give them their own fixture"
        with pytest.raises(odedsl.ModelError) as info:
            odedsl.load(path)
        exc = info.value
        assert_reported(path, errors, exc.diagnostics)
        assert all(d.file == str(path) for d in exc.diagnostics)
        first = exc.diagnostics[0]
        assert (exc.file, exc.line, exc.column, exc.message) == (str(path), first.line, first.column, first.message)
    else:
        model = odedsl.load(path)
        assert_reported(path, warnings, model.warnings)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_check_command_exit_code(path: Path, capsys):
    """``odedsl check FILE``: 1 for a model with errors, 0 when it only has warnings; never an internal error."""
    has_errors = any(not e.warning for e in expectations(path))
    assert cli_main(["check", str(path)]) == (1 if has_errors else 0)
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err
    kind = "error" if has_errors else "warning"
    assert f"{path}:{expectations(path)[0].line}:{expectations(path)[0].column}: {kind}: " in err


def _blocks(stderr: str, shown: str) -> dict[tuple[int, int], list[list[str]]]:
    """Each ``FILE:LINE:COL: kind: message`` header of one file with the two lines under it."""
    lines = stderr.splitlines()
    head = re.compile(re.escape(shown) + r":(\d+):(\d+): (error|warning): ")
    blocks: dict[tuple[int, int], list[list[str]]] = {}
    for i, text in enumerate(lines):
        m = head.match(text)
        if m:
            blocks.setdefault((int(m.group(1)), int(m.group(2))), []).append(lines[i : i + 3])
    return blocks


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_check_command_output(path: Path, cli_run_of_error_fixtures, cli_run_of_warning_fixtures):
    """The command prints FILE:LINE:COL, the offending line and a caret under the column, no traceback."""
    expects = expectations(path)
    run = cli_run_of_error_fixtures if any(not e.warning for e in expects) else cli_run_of_warning_fixtures
    assert run.returncode == (1 if run is cli_run_of_error_fixtures else 0), run.stderr[-2000:]
    assert "Traceback" not in run.stdout + run.stderr
    assert "internal error" not in run.stderr
    blocks = _blocks(run.stderr, _shown(path))
    assert sum(len(b) for b in blocks.values()) == len(expects), run.stderr
    source = path.read_text(encoding="utf-8").split("\n")
    for e in expects:
        assert (e.line, e.column) in blocks, f"no {_shown(path)}:{e.line}:{e.column}: in\n{run.stderr}"
        for header, shown_line, caret in blocks[(e.line, e.column)]:
            assert shown_line == "  " + source[e.line - 1]
            assert caret.index("^") == 1 + e.column, f"caret misplaced:\n{shown_line}\n{caret}"
            assert set(caret[: 1 + e.column]) <= {" ", "\t"}


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_example_models_are_clean(path: Path):
    assert expectations(path) == [], "example models are not fixtures"
    model = odedsl.load(path)
    assert model.warnings == []


def test_example_models_pass_the_check_command():
    run = _cli(*(_shown(p) for p in MODELS))
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert run.stdout.count("ok  ") == len(MODELS)


def test_matching_is_one_to_one():
    """The harness itself: two expectations cannot both be satisfied by one diagnostic."""
    from odedsl.errors import Span

    d = Diagnostic("f.ode", Span(2, 3, 2, 4), "'k' is not declared", "did you mean 'kk'?")
    one = Expect(False, 2, 3, ("not declared",))
    other = Expect(False, 2, 3, ("did you mean",))
    assert unmatched([one], [d]) == ([], [])
    assert unmatched([one, other], [d]) == ([other], [])
    assert unmatched([], [d]) == ([], [d])
    assert unmatched([Expect(False, 2, 4, ("not declared",))], [d])[0]
    assert unmatched([Expect(False, 2, 3, ("not declared", "kk'?"))], [d]) == ([], [])
    assert unmatched([Expect(False, 2, 3, ("not declared", "zz"))], [d])[1] == [d]


# -- mistakes too large to keep as fixture files ----------------------------------------------


@pytest.mark.parametrize("expr", ["-" * 5000 + "x", "2^" * 5000 + "x", "not " * 5000 + "x > 0", "x" + "[0]" * 5000])
def test_deeply_nested_expression_is_an_error_not_a_crash(expr):
    with pytest.raises(odedsl.ModelError) as info:
        odedsl.loads(f"state x = 1\nder(x) = {expr}\n", name="deep.ode")
    [d] = info.value.diagnostics
    assert (d.line, d.column) == (2, 10)
    assert "nested too deeply" in d.message


def test_brackets_nested_too_deep():
    with pytest.raises(odedsl.ModelError) as info:
        odedsl.loads("state x = 1\nder(x) = " + "(" * 70 + "x" + ")" * 70 + "\n")
    [d] = info.value.diagnostics
    assert (d.line, d.column) == (2, 10 + 64)
    assert "nested more than 64 deep" in d.message


@pytest.mark.parametrize("where, column", [
    ("nn U: {n} -> 1\nstate x = 1\nder(x) = U(x)\n", (1, 7)),
    ("nn U: 1 -> 1, hidden = [{n}]\nstate x = 1\nder(x) = U(x)\n", (1, 25)),
    ("nn U: 1 -> 2\nstate x = 1\nder(x) = U(x)[{n}]\n", (3, 15)),
    ("state x = {n}\nder(x) = -x\n", (1, 11)),
])
def test_huge_integer_literal(where, column):
    """More digits than Python converts to int by default (4300): a located error, not a ValueError."""
    digits = "9" * 5000
    with pytest.raises(odedsl.ModelError) as info:
        odedsl.loads(where.format(n=digits))
    [d] = info.value.diagnostics
    assert (d.line, d.column) == column
    assert "too large for double precision" in d.message
