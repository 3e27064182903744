"""Text to syntax tree (``odedsl.lang.parser``): every statement and expression form, layout, spans."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import odedsl
from odedsl.errors import Span
from odedsl.lang.ast import (
    Bounds, Call, Chain, Compare, ConstDecl, Derivative, Ident, IfElse, Index, InputDecl, LetDecl, ModelDecl,
    Name, NetDecl, NetOption, Noise, Number, ObserveDecl, ParamDecl, Power, StateDecl, TimeDecl, Unary,
)
from odedsl.lang.parser import parse


def statements(text: str) -> tuple:
    tree, rep = parse(text, "t.ode")
    assert rep.diagnostics == [], "\n".join(d.format() for d in rep.diagnostics)
    assert tree.filename == "t.ode" and tree.text == text
    return tree.statements


def one(text: str):
    [s] = statements(text)
    return s


def expr(src: str):
    """The expression ``src``, parsed as the value of a let (it starts at column 9)."""
    s = one(f"let e = {src}\n")
    assert isinstance(s, LetDecl)
    return s.value


def shape(e) -> object:
    """An expression without its spans, for comparing structure at a glance."""
    if isinstance(e, Number):
        return e.text
    if isinstance(e, Name):
        return e.name
    if isinstance(e, Call):
        return ("call", e.func.name, *map(shape, e.args))
    if isinstance(e, Index):
        return ("index", shape(e.target), shape(e.index))
    if isinstance(e, Unary):
        return (e.op, shape(e.operand))
    if isinstance(e, Chain):
        return (e.kind, tuple(map(shape, e.operands)), e.ops)
    if isinstance(e, Power):
        return ("^", shape(e.base), shape(e.exponent))
    if isinstance(e, Compare):
        return (e.op, shape(e.left), shape(e.right))
    if isinstance(e, IfElse):
        return ("if", shape(e.cond), shape(e.then), shape(e.orelse))
    raise TypeError(type(e))


def sp(line: int, column: int, end_column: int, end_line: int | None = None) -> Span:
    return Span(line, column, line if end_line is None else end_line, end_column)


# -- statements ----------------------------------------------------------------------------------


def test_model_header_with_description():
    s = one('model lotka "predator # prey"\n')
    assert s == ModelDecl(Ident("lotka", sp(1, 7, 12)), "predator # prey", sp(1, 1, 30))


def test_model_header_without_description():
    assert one("model decay\n") == ModelDecl(Ident("decay", sp(1, 7, 12)), None, sp(1, 1, 12))


def test_model_header_with_empty_description():
    assert one('model m ""\n').description == ""


def test_time():
    assert one("time tau\n") == TimeDecl(Ident("tau", sp(1, 6, 9)), sp(1, 1, 9))


def test_state():
    s = one("state x = 2*k\n")
    assert isinstance(s, StateDecl)
    assert s.name == Ident("x", sp(1, 7, 8))
    assert shape(s.initial) == ("product", ("2", "k"), ("*",))
    assert s.span == sp(1, 1, 14)


def test_param_plain():
    s = one("param k = 1.5\n")
    assert s == ParamDecl(Ident("k", sp(1, 7, 8)), Number("1.5", sp(1, 11, 14)), None, False, sp(1, 1, 14))


def test_param_bounds():
    s = one("param k = 1 in [0, inf]\n")
    assert s.bounds == Bounds(Number("0", sp(1, 17, 18)), Name("inf", sp(1, 20, 23)), sp(1, 13, 24))
    assert s.fixed is False
    assert s.span == sp(1, 1, 24)


def test_param_fixed():
    s = one("param k = -2 fixed\n")
    assert shape(s.value) == ("-", "2")
    assert s.bounds is None and s.fixed is True
    assert s.span == sp(1, 1, 19)


def test_param_bounds_and_fixed():
    s = one("param k = 1 in [-1, 2*c] fixed\n")
    assert shape(s.bounds.lower) == ("-", "1")
    assert shape(s.bounds.upper) == ("product", ("2", "c"), ("*",))
    assert s.fixed is True
    assert s.span == sp(1, 1, 31)


def test_const_and_input():
    c, u = statements("const g = 9.81\ninput forcing\n")
    assert c == ConstDecl(Ident("g", sp(1, 7, 8)), Number("9.81", sp(1, 11, 15)), sp(1, 1, 15))
    assert u == InputDecl(Ident("forcing", sp(2, 7, 14)), sp(2, 1, 14))


def test_nn_without_options():
    s = one("nn U: 2 -> 3\n")
    assert s == NetDecl(Ident("U", sp(1, 4, 5)), Number("2", sp(1, 7, 8)), Number("3", sp(1, 12, 13)), (), sp(1, 1, 13))


def test_nn_options():
    s = one("nn U: 2 -> 2, hidden = [32, 16], activation = tanh, init_scale = 0.01\n")
    hidden, activation, scale = s.options
    assert isinstance(hidden, NetOption) and hidden.name.name == "hidden"
    assert hidden.value == (Number("32", sp(1, 25, 27)), Number("16", sp(1, 29, 31)))
    assert activation == NetOption(Ident("activation", sp(1, 34, 44)), Name("tanh", sp(1, 47, 51)), sp(1, 34, 51))
    assert scale.value == Number("0.01", sp(1, 66, 70))
    assert s.span.end_column == 70


@pytest.mark.parametrize("src, widths", [("[]", ()), ("[8]", ("8",)), ("[1, 2, 3]", ("1", "2", "3")), ("4", None)])
def test_nn_hidden_list_forms(src, widths):
    [opt] = one(f"nn U: 1 -> 1, hidden = {src}\n").options
    if widths is None:  # a bare number is kept as a number; the checker accepts it as one layer
        assert opt.value == Number("4", sp(1, 24, 25))
    else:
        assert isinstance(opt.value, tuple)
        assert tuple(n.text for n in opt.value) == widths


def test_let():
    s = one("let I = U(prey, pred)\n")
    assert s.name == Ident("I", sp(1, 5, 6))
    assert shape(s.value) == ("call", "U", "prey", "pred")


@pytest.mark.parametrize("text, spelling, state_span, rhs_column", [
    ("der(x) = -x\n", "der", sp(1, 5, 6), 10),
    ("x' = -x\n", "prime", sp(1, 1, 2), 6),
    ("dx/dt = -x\n", "ratio", sp(1, 1, 3), 9),
])
def test_three_derivative_spellings(text, spelling, state_span, rhs_column):
    s = one(text)
    assert isinstance(s, Derivative)
    assert s.spelling == spelling
    assert s.state.span == state_span
    assert shape(s.rhs) == ("-", "x")
    assert s.rhs.span.column == rhs_column
    assert s.span == sp(1, 1, rhs_column + 2)


def test_ratio_derivative_keeps_both_names():
    s = one("dprey/dtau = 1\n")
    assert s.state == Ident("dprey", sp(1, 1, 6))
    assert s.time == Ident("dtau", sp(1, 7, 11))
    assert one("der(x) = 1\n").time is None and one("x' = 1\n").time is None


def test_derivative_spellings_with_spaces():
    assert one("der ( x ) = 1\n").state.name == "x"
    assert one("x ' = 1\n").spelling == "prime"
    assert one("dx / dt = 1\n").spelling == "ratio"


def test_observe_without_noise():
    s = one("observe prey_count = 2*prey\n")
    assert s.column == Ident("prey_count", sp(1, 9, 19))
    assert shape(s.value) == ("product", ("2", "prey"), ("*",))
    assert s.noise is None
    assert s.span == sp(1, 1, 28)


def test_observe_with_noise():
    s = one("observe c = x ~ normal(0.1)\n")
    assert s.noise == Noise(Ident("normal", sp(1, 17, 23)), (Number("0.1", sp(1, 24, 27)),), sp(1, 15, 28))
    assert s.span == sp(1, 1, 28)
    assert isinstance(s, ObserveDecl)


def test_observe_noise_argument_counts():
    assert one("observe c = x ~ normal()\n").noise.args == ()
    assert [shape(a) for a in one("observe c = x ~ normal(s, 2)\n").noise.args] == ["s", "2"]


def test_every_statement_in_one_file_in_order():
    text = """model m "d"
time t
param k = 1 in [0, 2] fixed
const c = 2
input u
state x = 1
nn U: 1 -> 1, hidden = [4]
let a = U(x)
der(x) = a
observe y = x ~ normal(0.1)
"""
    kinds = [type(s) for s in statements(text)]
    assert kinds == [ModelDecl, TimeDecl, ParamDecl, ConstDecl, InputDecl, StateDecl, NetDecl, LetDecl, Derivative,
                     ObserveDecl]
    assert [s.span.line for s in statements(text)] == list(range(1, 11))


def test_names_that_begin_with_keywords_are_names():
    text = "state input_rate = 1\nlet index = order\nparam fixedness = 1\nlet iffy = notable\nder(dert) = thence\n"
    names = [s.name.name if not isinstance(s, Derivative) else s.state.name for s in statements(text)]
    assert names == ["input_rate", "index", "fixedness", "iffy", "dert"]
    assert statements(text)[1].value == Name("order", sp(2, 13, 18))


# -- expressions --------------------------------------------------------------------------------


@pytest.mark.parametrize("src", ["1", "2.5", "1e-3", "1E+3", ".5", "1.", "1.e5", "007"])
def test_number_literals_keep_their_text(src):
    assert expr(src) == Number(src, sp(1, 9, 9 + len(src)))


def test_name():
    assert expr("alpha_2") == Name("alpha_2", sp(1, 9, 16))


def test_calls_with_zero_one_and_several_arguments():
    assert expr("f()") == Call(Ident("f", sp(1, 9, 10)), (), sp(1, 9, 12))
    assert shape(expr("sin(x)")) == ("call", "sin", "x")
    assert shape(expr("max(a, b + 1, c)")) == ("call", "max", "a", ("sum", ("b", "1"), ("+",)), "c")
    assert shape(expr("f(g(x), h())")) == ("call", "f", ("call", "g", "x"), ("call", "h"))


def test_net_call_indexing():
    e = expr("U(x, y)[1]")
    assert isinstance(e, Index)
    assert shape(e) == ("index", ("call", "U", "x", "y"), "1")
    assert e.span == sp(1, 9, 19)
    assert e.index.span == sp(1, 17, 18)
    assert shape(expr("I[0] + I[1]")) == ("sum", (("index", "I", "0"), ("index", "I", "1")), ("+",))


def test_indexing_binds_tighter_than_power_and_minus():
    assert shape(expr("-U(x)[0]^2")) == ("-", ("^", ("index", ("call", "U", "x"), "0"), "2"))


def test_unary_minus_binds_looser_than_power():
    e = expr("-x^2")
    assert isinstance(e, Unary) and e.op == "-"
    assert isinstance(e.operand, Power)
    assert shape(e) == ("-", ("^", "x", "2"))
    assert e.span == sp(1, 9, 13)


def test_power_is_right_associative():
    assert shape(expr("a^b^c")) == ("^", "a", ("^", "b", "c"))
    assert shape(expr("a**b**c")) == ("^", "a", ("^", "b", "c"))
    assert shape(expr("a^b**c")) == ("^", "a", ("^", "b", "c"))


def test_negative_exponent():
    assert shape(expr("2^-1")) == ("^", "2", ("-", "1"))
    assert shape(expr("x^-y^2")) == ("^", "x", ("-", ("^", "y", "2")))


def test_unary_signs():
    assert shape(expr("+x")) == ("+", "x")
    assert shape(expr("--x")) == ("-", ("-", "x"))
    assert shape(expr("-a * b")) == ("product", (("-", "a"), "b"), ("*",))


def test_sum_is_one_flat_chain():
    e = expr("a - b + c")
    assert isinstance(e, Chain)
    assert e.kind == "sum" and e.ops == ("-", "+")
    assert [x.name for x in e.operands] == ["a", "b", "c"]
    assert e.span == sp(1, 9, 18)


def test_product_is_one_flat_chain():
    assert shape(expr("a * b / c * d")) == ("product", ("a", "b", "c", "d"), ("*", "/", "*"))


def test_product_binds_tighter_than_sum():
    assert shape(expr("a + b * c")) == ("sum", ("a", ("product", ("b", "c"), ("*",))), ("+",))
    assert shape(expr("(a + b) * c")) == ("product", (("sum", ("a", "b"), ("+",)), "c"), ("*",))


def test_parentheses_leave_no_node_but_widen_the_span():
    assert expr("((x))") == Name("x", sp(1, 9, 14))
    e = expr("-(a + b)")
    assert shape(e) == ("-", ("sum", ("a", "b"), ("+",)))
    assert e.operand.span == sp(1, 10, 17)
    assert e.span == sp(1, 9, 17)


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "==", "!="])
def test_comparisons(op):
    e = expr(f"a + 1 {op} 2 * b")
    assert isinstance(e, Compare) and e.op == op
    assert shape(e.left) == ("sum", ("a", "1"), ("+",))
    assert shape(e.right) == ("product", ("2", "b"), ("*",))
    assert e.op_span == sp(1, 15, 15 + len(op))


def test_and_or_not_precedence():
    e = expr("a > 0 or b > 0 and not c > 0")
    assert shape(e) == ("or", (
        (">", "a", "0"),
        ("and", ((">", "b", "0"), ("not", (">", "c", "0"))), ("and",)),
    ), ("or",))
    assert shape(expr("p and q or r")) == ("or", (("and", ("p", "q"), ("and",)), "r"), ("or",))
    assert shape(expr("not not p")) == ("not", ("not", "p"))
    assert shape(expr("p or q or r")) == ("or", ("p", "q", "r"), ("or", "or"))


def test_if_is_the_loosest():
    e = expr("if x > 0 and y < 1 then a + 1 else b * 2")
    assert isinstance(e, IfElse)
    assert shape(e) == ("if", ("and", ((">", "x", "0"), ("<", "y", "1")), ("and",)),
                        ("sum", ("a", "1"), ("+",)), ("product", ("b", "2"), ("*",)))
    assert e.span == sp(1, 9, 49)


def test_if_else_extends_to_the_right_and_nests():
    assert shape(expr("if c then a else b + 1")) == ("if", "c", "a", ("sum", ("b", "1"), ("+",)))
    assert shape(expr("if x > 0 then 1 else if x < 0 then -1 else 0")) == (
        "if", (">", "x", "0"), "1", ("if", ("<", "x", "0"), ("-", "1"), "0"))
    assert shape(expr("(if c then a else b) + 1")) == ("sum", (("if", "c", "a", "b"), "1"), ("+",))


def test_if_inside_an_operator_needs_parentheses():
    tree, rep = parse("let e = 1 + if c then a else b\n", "t.ode")
    assert tree.statements == ()
    [d] = rep.errors
    assert (d.line, d.column) == (1, 13)
    assert "unexpected keyword 'if'" in d.message


# -- layout: comments, blank lines, continuation -----------------------------------------------


def test_comments_and_blank_lines():
    text = "# header\n\n   \nstate x = 1   # trailing\n\t# indented comment\nder(x) = -x#no space\n\n"
    s, d = statements(text)
    assert s.span.line == 4 and d.span.line == 6
    assert shape(d.rhs) == ("-", "x")


def test_brackets_and_quotes_in_comments_are_ignored():
    state, eq = statements("state x = 1 # it's (unbalanced [\nder(x) = -x # \"\n")
    assert shape(state.initial) == "1" and shape(eq.rhs) == ("-", "x")


def test_continuation_inside_parentheses():
    s = one("der(x) = -(x +\n   2*y\n   )   # done\n")
    assert shape(s.rhs) == ("-", ("sum", ("x", ("product", ("2", "y"), ("*",))), ("+",)))
    assert s.rhs.span == sp(1, 10, 5, end_line=3)
    assert s.span == sp(1, 1, 5, end_line=3)


def test_continuation_inside_call_arguments():
    s = one("let a = max(x,\n\n   # a comment inside\n   y)\n")
    assert shape(s.value) == ("call", "max", "x", "y")
    assert s.value.args[1].span == sp(4, 4, 5)


def test_continuation_inside_brackets():
    [opt] = one("nn U: 1 -> 1, hidden = [\n  32,\n  32\n]\n").options
    assert [(n.text, n.span.line) for n in opt.value] == [("32", 2), ("32", 3)]


def test_continuation_with_backslash():
    s, eq = statements("state x = 1 + \\\n    2\nder(x) = -x \\   \n  * 3\n")
    assert shape(s.initial) == ("sum", ("1", "2"), ("+",))
    assert s.initial.operands[1].span == sp(2, 5, 6)
    assert shape(eq.rhs) == ("product", (("-", "x"), "3"), ("*",))
    assert eq.span.line == 3


def test_statements_after_continued_lines_keep_their_lines():
    text = "state x = (1 +\n 2)\nder(x) = -x\n"
    assert [s.span.line for s in statements(text)] == [1, 3]


def test_last_statement_without_newline():
    assert [type(s) for s in statements("state x = 1\nder(x) = -x")] == [StateDecl, Derivative]


def test_empty_and_comment_only_text_have_no_statements():
    assert statements("") == ()
    assert statements("# nothing\n\n") == ()


def test_tabs_count_as_one_column():
    s = one("state\tx =\t1\n")
    assert s.name.span == sp(1, 7, 8)
    assert s.initial.span == sp(1, 11, 12)


# -- errors at the parser level ------------------------------------------------------------------


def test_broken_statement_does_not_hide_the_others():
    tree, rep = parse("state x = 1\nparam k =\nder(x) = -x\nconst c = (\n", "t.ode")
    assert [type(s) for s in tree.statements] == [StateDecl, Derivative]
    assert sorted((d.line, d.column) for d in rep.errors) == [(2, 10), (4, 11)]
    assert rep.warnings == []
    assert all(d.file == "t.ode" for d in rep.diagnostics)
    assert sorted(d.source_line for d in rep.errors) == ["const c = (", "param k ="]


def test_syntax_error_spans_cover_the_offending_token():
    _, rep = parse("let a = 2 alpha\n", "t.ode")
    [d] = rep.errors
    assert d.span == sp(1, 11, 16)
    assert d.hint == "write multiplication explicitly: 2*alpha"


def test_a_statement_keyword_ends_an_unclosed_bracket():
    tree, rep = parse("state x = (1 +\n  2\nder(x) = -x\n", "t.ode")
    [d] = rep.errors
    assert (d.line, d.column, d.message) == (1, 11, "'(' is never closed")
    assert [type(s) for s in tree.statements] == [Derivative]


def test_parse_is_reentrant():
    """The parser is built once and shared; parsing one text must not disturb another."""
    a, _ = parse("state x = 1\n", "a.ode")
    _, rep = parse("state = \n", "b.ode")
    b, _ = parse("state y = 2\n", "c.ode")
    assert a.statements[0].name.name == "x" and b.statements[0].name.name == "y"
    assert rep.errors[0].file == "b.ode"


# -- anything at all ------------------------------------------------------------------------------

PIECES = ["state", "param", "der", "nn", "let", "observe", "model", "time", "if", "then", "else", "and", "not", "in",
          "fixed", "x", "k", "U", "dx", "dt", "normal", "1", "2.5", "1e999", "(", ")", "[", "]", "+", "-", "*", "/",
          "^", "**", "<", "==", "=", ":", "->", ",", "~", "'", '"s"', '"', "#", "\\\n", "\n", "\n", " ", "$", ";", "\t"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_any_token_soup_is_parsed_or_reported_in_place(pieces):
    text = " ".join(pieces)
    tree, rep = parse(text, "soup.ode")
    lines = text.split("\n")
    for d in rep.diagnostics:
        assert 1 <= d.line <= len(lines)
        assert 1 <= d.column <= len(lines[d.line - 1]) + 2
        assert d.source_line == lines[d.line - 1]
    try:  # the whole front end: a model or a ModelError, nothing else
        odedsl.loads(text, name="soup.ode")
    except odedsl.ModelError as exc:
        assert all(d.line >= 1 and d.column >= 1 for d in exc.diagnostics)
