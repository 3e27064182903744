"""Robustness: whatever text or bytes a model file holds, ``odedsl.loads`` either returns a
Model or raises ``odedsl.OdedslError``; no other exception escapes, and nothing hangs.

A compiled model must also survive what every later stage does with it first (print it,
describe it as JSON, differentiate it). Set ``ODEDSL_FUZZ_SCALE=50`` for a long search.
"""

from __future__ import annotations

import json
import os
import re
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import odedsl
from odedsl.errors import ModelError
from odedsl.lang.builtins import ACTIVATIONS, FUNCTIONS, NOISE_MODELS
from odedsl.lang.parser import KEYWORDS

MODELS = Path(__file__).resolve().parents[1] / "models"
MODEL_TEXTS = [p.read_text(encoding="utf-8") for p in sorted(MODELS.glob("*.ode"))]
SCALE = float(os.environ.get("ODEDSL_FUZZ_SCALE", "1"))
TIME_LIMIT_S = 10  # per example: far above any honest compile of these small texts


def examples(n: int) -> settings:
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


class Hang(Exception):
    """An example took longer than TIME_LIMIT_S."""


@contextmanager
def time_limit(seconds: float):
    def expire(signum, frame):
        raise Hang(f"compiling took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def compiles_or_reports(source: str | bytes) -> None:
    """The property: a Model that later stages can use, or a located OdedslError."""
    with time_limit(TIME_LIMIT_S):
        try:
            m = odedsl.loads(source, name="fuzz.ode")
        except ModelError as exc:
            text = source if isinstance(source, str) else source.decode("utf-8", errors="replace")
            n_lines = text.replace("\r\n", "\n").replace("\r", "\n").count("\n") + 1
            assert exc.diagnostics
            for d in exc.diagnostics:
                assert d.file == "fuzz.ode"
                assert 1 <= d.line <= n_lines + 1, d
                assert d.column >= 1, d
                assert d.message and d.format().startswith(f"fuzz.ode:{d.line}:{d.column}: ")
            assert str(exc)
            return
        except odedsl.OdedslError as exc:
            assert str(exc)
            return
        assert m.states and len(m.rhs) == len(m.states)
        str(m)
        repr(m)
        m._repr_latex_()
        json.dumps(m.to_dict())
        m.jacobian_states()
        m.jacobian_params()
        m.time_derivative()
        m.net_calls()
        m.cse()


# ---------------------------------------------------------------------------
# (a) random text
# ---------------------------------------------------------------------------

NAMES = sorted({w for t in MODEL_TEXTS for w in re.findall(r"[A-Za-z_]\w*", t)} - KEYWORDS)
TOKENS = (
    sorted(KEYWORDS) + sorted(FUNCTIONS) + list(ACTIVATIONS) + list(NOISE_MODELS) + NAMES
    + ["pi", "inf", "t", "x", "y", "U", "hidden", "activation", "init_scale", "der(x)", "x'", "dx/dt"]
    + ["0", "1", "2", "0.0", "1.5", "1e-3", "1e308", "1e999", ".5", "1.", "10", "300", "99999999999999999999"]
    + list("=:,~'()[]+-*/^<>.#\"\\;{}!&|@$%?`") + ["**", "->", "<=", ">=", "==", "!=", '"text"']
    + [" ", "  ", "\t", "\n", "\n\n", "\r\n", "\r", "\\\n", "# comment\n", "\ufeff", "\x00", "é", "∂", "😀"]
)


@examples(500)
@given(st.text(max_size=300))
def test_arbitrary_unicode_text(text):
    compiles_or_reports(text)


@examples(1000)
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map("".join))
def test_token_soup(text):
    compiles_or_reports(text)


@examples(600)
@given(st.lists(st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join), max_size=10).map("\n".join))
def test_token_lines(text):
    compiles_or_reports(text)


# ---------------------------------------------------------------------------
# (b) mutations of the example models
# ---------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\*\*|->|[<>=!]=|\S")


def _position(draw, text: str) -> int:
    return draw(st.integers(0, len(text)))


def _lines_op(draw, text: str, kind: str) -> str:
    lines = text.split("\n")
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "delete_line":
        del lines[i]
    elif kind == "duplicate_line":
        lines.insert(draw(st.integers(0, len(lines))), lines[i])
    else:  # swap_lines
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def _token_op(draw, text: str, kind: str) -> str:
    spans = [m.span() for m in _TOKEN_RE.finditer(text)]
    if not spans:
        return text
    a, b = spans[draw(st.integers(0, len(spans) - 1))]
    if kind == "delete_token":
        return text[:a] + text[b:]
    if kind == "duplicate_token":
        return text[:b] + " " + text[a:b] + text[b:]
    new = draw(st.sampled_from(TOKENS))
    return text[:a] + new + text[b:] if kind == "replace_token" else text[:a] + new + " " + text[a:]


def mutate(draw, text: str, kind: str) -> str:
    if kind in ("delete_line", "duplicate_line", "swap_lines"):
        return _lines_op(draw, text, kind)
    if kind in ("delete_token", "duplicate_token", "replace_token", "insert_token"):
        return _token_op(draw, text, kind)
    i = _position(draw, text)
    if kind == "delete_chars":
        return text[:i] + text[i + draw(st.integers(1, 8)):]
    if kind == "insert_chars":
        return text[:i] + draw(st.text(min_size=1, max_size=4)) + text[i:]
    if kind == "replace_char":
        return text[:i] + draw(st.characters()) + text[i + 1:]
    if kind == "truncate":
        return text[:i]
    raise AssertionError(kind)


MUTATIONS = ["delete_line", "duplicate_line", "swap_lines", "delete_token", "duplicate_token", "replace_token",
             "insert_token", "delete_chars", "insert_chars", "replace_char", "truncate"]


@st.composite
def mutated_models(draw) -> str:
    text = draw(st.sampled_from(MODEL_TEXTS))
    for kind in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4)):
        text = mutate(draw, text, kind)
    return text


@examples(1500)
@given(mutated_models())
def test_mutated_example_models(text):
    compiles_or_reports(text)


def test_every_example_model_compiles():
    for text in MODEL_TEXTS:
        compiles_or_reports(text)


# ---------------------------------------------------------------------------
# (c) random bytes
# ---------------------------------------------------------------------------


@examples(400)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data):
    compiles_or_reports(data)


@st.composite
def corrupted_model_bytes(draw) -> bytes:
    data = draw(st.sampled_from(MODEL_TEXTS)).encode("utf-8")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(data)))
        junk = draw(st.sampled_from([b"\x00", b"\xff", b"\xc3", b"\xe2\x88", b"\xef\xbb\xbf", b"\r", b"\r\n", b"\x80"])
                    | st.binary(min_size=1, max_size=3))
        data = data[:i] + junk + data[i + draw(st.integers(0, 2)):]
    return data


@examples(400)
@given(corrupted_model_bytes())
def test_corrupted_model_bytes(data):
    compiles_or_reports(data)


# ---------------------------------------------------------------------------
# (d) well-formed models with random expressions: what reaches the checker and the lowering
# ---------------------------------------------------------------------------

HEADER = """\
param a = 0.5 in [0, 10]
param b = 2 fixed
const c = 3
input u
nn U: 2 -> 2, hidden = [3]
nn V: 1 -> 1, hidden = []
state x = 1
state y = 2
"""
NUMBERS = ["0", "1", "2", "0.0", "0.5", "3", "10", "300", "1e308", "1e-308", "1e-400", "1e300", "9", "-1", "1/3",
           "0.1", "2.5", "1e10", "709", "710", "1000"]
ATOMS = NUMBERS + ["x", "y", "a", "b", "c", "u", "t", "pi"]
ONE_ARG = sorted(n for n, f in FUNCTIONS.items() if f.min_args == 1 and f.max_args == 1)


def conditions(operands):
    compare = st.tuples(operands, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), operands).map(" ".join)
    return st.one_of(
        compare,
        compare.map(lambda c: f"not {c}"),
        st.tuples(compare, st.sampled_from(["and", "or"]), compare).map(" ".join),
    )


def expressions(names=ATOMS, nets: bool = True):
    def extend(inner):
        calls = [
            st.tuples(inner, inner, st.sampled_from(["0", "1"])).map(lambda t: f"U({t[0]}, {t[1]})[{t[2]}]"),
            inner.map(lambda e: f"V({e})"),
        ]
        return st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "^"]), inner).map(lambda t: f"({' '.join(t)})"),
            st.tuples(st.sampled_from(ONE_ARG), inner).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(st.sampled_from(["min", "max", "atan2"]), inner, inner).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
            st.tuples(conditions(inner), inner, inner).map(lambda t: f"(if {t[0]} then {t[1]} else {t[2]})"),
            inner.map(lambda e: f"-{e}"),
            *(calls if nets else []),
        )

    return st.recursive(st.sampled_from(names), extend, max_leaves=8)


CONSTANT_EXPRESSIONS = expressions(NUMBERS + ["c", "pi"], nets=False)
LET_EXPRESSIONS = expressions()
EQUATION_EXPRESSIONS = expressions(ATOMS + ["l", "d", "k", "w[0]", "w[1]"])


@st.composite
def random_models(draw) -> str:
    lines = [
        HEADER,
        f"const d = {draw(CONSTANT_EXPRESSIONS)}",
        f"param k = {draw(CONSTANT_EXPRESSIONS)} in [{draw(st.sampled_from(['0', '-inf', 'c', '1e-300']))}, inf]",
        f"let l = {draw(LET_EXPRESSIONS)}",
        "let w = U(x, l)",
        f"der(x) = {draw(EQUATION_EXPRESSIONS)}",
        f"der(y) = {draw(EQUATION_EXPRESSIONS)}",
        f"observe o = {draw(LET_EXPRESSIONS)} ~ normal({draw(LET_EXPRESSIONS)})",
    ]
    return "\n".join(lines) + "\n"


@examples(600)
@given(random_models())
def test_random_well_formed_models(text):
    compiles_or_reports(text)


# ---------------------------------------------------------------------------
# Examples found by fuzzing, kept as ordinary tests
# ---------------------------------------------------------------------------

FOUND = [
    # lowering: SymPy raised TypeError/ValueError comparing a non-real constant
    "state x = 1\nder(x) = if x < log(0) then 1 else 2\n",
    "state x = 1\nder(x) = min(x, sqrt(-1))\n",
    "nn U: 1 -> 1\nstate x = 1\nder(x) = min(U(1.0), 2)\n",
    # lowering: math.log10(0.0) on a Float zero base
    "state x = 1\nder(x) = 0.0^-1\n",
    # lowering: SymPy's Piecewise failed (KeyError) on an if inside a condition without symbols
    "nn V: 1 -> 1\nstate x = 1\nlet l = if 0 < V(0) then 0 else 1\nder(x) = if 0 < l then x else 0\n",
    # lowering: a broken let stood for NaN, which SymPy's min and atan2 raised on
    "nn U: 2 -> 2, hidden = [3]\nstate x = 1\nlet l = -acosh(0)\nlet w = U(x, l)\nder(x) = min(0, w[0])\n",
    # lowering: SymPy evaluated these exactly, practically forever
    "param k = exp(exp(exp(100)))\nstate x = 1\nder(x) = x\n",
    "state x = 1\nder(x) = 2^(-10^10)\n",
    "state x = 1\nder(x) = (2*x)^(10^10)\n",
]


@pytest.mark.parametrize("text", FOUND)
def test_found_examples(text):
    compiles_or_reports(text)


def test_unicode_digits_are_not_numbers():
    """Only ASCII digits make numbers (a Unicode digit once reached sympy.Float and crashed)."""
    with pytest.raises(odedsl.ModelError, match="unexpected character"):
        odedsl.loads("state x = 1\u0663.5\nder(x) = -x\n")  # ARABIC-INDIC DIGIT THREE
    with pytest.raises(odedsl.ModelError):
        odedsl.loads("state x = \u0663\nder(x) = -x\n")
