"""Text to syntax tree: the Lark LALR parser, logical lines, and syntax-error messages.

The file is lexed once, split into logical lines (a newline inside brackets does not
end a statement), and each statement is parsed on its own. Parsing statement by
statement is what lets one run report every syntax error in a file, not just the
first, and keeps a broken line from hiding the rest.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer
from lark.lark import PostLex
from lark.exceptions import UnexpectedInput, UnexpectedToken

from odedsl.errors import Span
from odedsl.lang import ast
from odedsl.lang.report import Reporter

#: Statement keywords never occur inside an expression, so a line that starts with
#: one while a bracket is still open means the bracket was never closed.
STATEMENT_KEYWORDS = frozenset({"MODEL", "TIME", "STATE", "PARAM", "CONST", "INPUT", "NN", "LET", "DER", "OBSERVE"})
KEYWORDS = frozenset(
    {"model", "time", "state", "param", "const", "input", "nn", "let", "der", "observe",
     "in", "fixed", "if", "then", "else", "and", "or", "not"}
)
MAX_NESTING = 64
_OPEN = {"LPAR": "RPAR", "LSQB": "RSQB"}
_CLOSE = {"RPAR", "RSQB"}

_TOKEN_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": 'a "description"', "EQUAL": "'='",
    "COLON": "':'", "COMMA": "','", "ARROW": "'->'", "TILDE": "'~'", "PRIME": '"\'"',
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "PLUS": "'+'", "MINUS": "'-'",
    "STAR": "'*'", "SLASH": "'/'", "POW": "'^'", "COMPARE": "a comparison", "_NL": "end of line",
    "$END": "end of line",
}
_EXPR_START = {"NAME", "NUMBER", "LPAR"}
_OPERATORS = {"PLUS", "STAR", "SLASH", "POW", "COMPARE", "AND", "OR"}


def grammar_text() -> str:
    """The grammar, from inside the installed package or, in a source checkout, ``grammar/``."""
    packaged = resources.files("odedsl").joinpath("_grammar").joinpath("odedsl.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[2] / "grammar" / "odedsl.lark"
    return checkout.read_text(encoding="utf-8")


class _KeepErrorTokens(PostLex):
    """Keeps the grammar's error-only terminals in the lexer (Lark drops terminals no rule uses)."""

    always_accept = ("BAD_CHAR", "UNCLOSED_STRING")

    def process(self, stream):
        return stream


@functools.cache
def lark_parser() -> Lark:
    """The parser, built once per process.

    Lark's on-disk table cache is not used: building takes ~50 ms, and its cache key
    ignores the post-lexer, so a stale cache could silently drop the error terminals.
    """
    return Lark(
        grammar_text(), parser="lalr", lexer="basic", start=["start", "line"],
        maybe_placeholders=True, transformer=_ToAst(), postlex=_KeepErrorTokens(),
    )


def _span(x: Token | object) -> Span:
    if isinstance(x, Token):
        return Span(x.line, x.column, x.end_line, x.end_column)
    return x.span  # type: ignore[attr-defined]


def _ident(tok: Token) -> ast.Ident:
    return ast.Ident(str(tok), _span(tok))


def _exprs(children: list) -> tuple:
    return tuple(c for c in children if c is not None and not isinstance(c, Token))


class _ToAst(Transformer):
    """Builds AST nodes directly inside the LALR parser (no intermediate tree)."""

    # statements
    def line(self, c):
        return c[0]

    def model_stmt(self, c):
        desc = str(c[2])[1:-1] if len(c) > 2 else None
        return ast.ModelDecl(_ident(c[1]), desc, _span(c[0]).to(_span(c[-1])))

    def time_stmt(self, c):
        return ast.TimeDecl(_ident(c[1]), _span(c[0]).to(_span(c[1])))

    def state_stmt(self, c):
        return ast.StateDecl(_ident(c[1]), c[3], _span(c[0]).to(_span(c[3])))

    def param_stmt(self, c):
        bounds = next((x for x in c[4:] if isinstance(x, ast.Bounds)), None)
        fixed = any(isinstance(x, Token) and x.type == "FIXED" for x in c[4:])
        return ast.ParamDecl(_ident(c[1]), c[3], bounds, fixed, _span(c[0]).to(_span(c[-1])))

    def bounds(self, c):
        return ast.Bounds(c[2], c[4], _span(c[0]).to(_span(c[5])))

    def const_stmt(self, c):
        return ast.ConstDecl(_ident(c[1]), c[3], _span(c[0]).to(_span(c[3])))

    def input_stmt(self, c):
        return ast.InputDecl(_ident(c[1]), _span(c[0]).to(_span(c[1])))

    def nn_stmt(self, c):
        options = tuple(x for x in c[6:] if isinstance(x, ast.NetOption))
        return ast.NetDecl(_ident(c[1]), c[3], c[5], options, _span(c[0]).to(_span(c[-1])))

    def nn_option(self, c):
        return ast.NetOption(_ident(c[0]), c[2], _span(c[0]).to(_span(c[2]) if not isinstance(c[2], tuple) else _span(c[1])))

    def option_list(self, c):
        return _exprs(c)

    def let_stmt(self, c):
        return ast.LetDecl(_ident(c[1]), c[3], _span(c[0]).to(_span(c[3])))

    def der_stmt(self, c):
        return ast.Derivative(_ident(c[2]), c[5], "der", _span(c[0]).to(_span(c[5])))

    def prime_stmt(self, c):
        return ast.Derivative(_ident(c[0]), c[3], "prime", _span(c[0]).to(_span(c[3])))

    def ratio_stmt(self, c):
        return ast.Derivative(_ident(c[0]), c[4], "ratio", _span(c[0]).to(_span(c[4])), time=_ident(c[2]))

    def observe_stmt(self, c):
        noise = c[4] if len(c) > 4 else None
        return ast.ObserveDecl(_ident(c[1]), c[3], noise, _span(c[0]).to(_span(c[-1])))

    def noise(self, c):
        return ast.Noise(_ident(c[1]), _exprs(c[2:]), _span(c[0]).to(_span(c[-1])))

    # expressions
    def if_expr(self, c):
        return ast.IfElse(c[1], c[3], c[5], _span(c[0]).to(_span(c[5])))

    def _chain(self, kind, c):
        return ast.Chain(kind, tuple(c[0::2]), tuple(str(t) for t in c[1::2]), _span(c[0]).to(_span(c[-1])))

    def or_expr(self, c):
        return self._chain("or", c)

    def and_expr(self, c):
        return self._chain("and", c)

    def sum(self, c):
        return self._chain("sum", c)

    def product(self, c):
        return self._chain("product", c)

    def not_expr(self, c):
        return ast.Unary("not", c[1], _span(c[0]).to(_span(c[1])))

    def unary(self, c):
        return ast.Unary(str(c[0]), c[1], _span(c[0]).to(_span(c[1])))

    def comparison(self, c):
        return ast.Compare(str(c[1]), c[0], c[2], _span(c[1]), _span(c[0]).to(_span(c[2])))

    def power(self, c):
        return ast.Power(c[0], c[2], _span(c[0]).to(_span(c[2])))

    def index(self, c):
        return ast.Index(c[0], c[2], _span(c[0]).to(_span(c[3])))

    def number(self, c):
        return ast.Number(str(c[0]), _span(c[0]))

    def name(self, c):
        return ast.Name(str(c[0]), _span(c[0]))

    def call(self, c):
        return ast.Call(_ident(c[0]), _exprs(c[2:]), _span(c[0]).to(_span(c[-1])))

    def group(self, c):
        # No node of its own, but the span takes in the brackets, so that a node
        # ending in a bracketed part ends at its ')' (and carets underline "(a + b)").
        return dataclasses.replace(c[1], span=_span(c[0]).to(_span(c[2])))


def _describe(tok: Token) -> str:
    kind = tok.type
    if kind == "NAME":
        return f"name '{tok}'"
    if kind == "NUMBER":
        return f"number {tok}"
    if kind in ("_NL", "$END"):
        return "end of line"
    if str(tok) in KEYWORDS:
        return f"keyword '{tok}'"
    if kind == "STRING":
        return f"string {tok}"
    return f'"{tok}"' if "'" in tok else f"'{tok}'"


def _expected_words(expected: set[str]) -> str:
    words: list[str] = []
    rest = set(expected)
    if _EXPR_START <= rest:
        words.append("an expression")
        rest -= _EXPR_START | {"MINUS", "PLUS", "IF", "NOT"}
    if "STAR" in rest:
        words.append("an operator")
        rest -= _OPERATORS | {"MINUS", "LSQB"}
    if rest & {"_NL", "$END"}:
        rest -= {"_NL", "$END"}
        tail = ["end of line"]
    else:
        tail = []
    for kind in sorted(rest):
        words.append(_TOKEN_WORDS.get(kind, f"'{kind.lower()}'"))
    words += tail
    if not words:
        return ""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _acceptable(tokens: list[Token], position: int) -> set[str]:
    """The tokens truly acceptable before ``tokens[position]``.

    LALR's own lookahead set at the error is merged across states and far too wide,
    and the failed parser state is already half-reduced, so replay the prefix.
    """
    replay = lark_parser().parse_interactive(start="line")
    for tok in tokens[:position]:
        replay.feed_token(tok)
    return set(replay.accepts())


def _syntax_error(rep: Reporter, exc: UnexpectedToken, tokens: list[Token], last_line: int) -> None:
    tok = exc.token
    at_end = tok.type == "$END"
    span = Span(tokens[-1].end_line, tokens[-1].end_column, tokens[-1].end_line, tokens[-1].end_column + 1) if at_end else _span(tok)
    position = next((i for i, t in enumerate(tokens) if t is tok), len(tokens))
    prev = tokens[position - 1] if position > 0 else None
    hint = None
    if tok.type == "BAD_CHAR":
        message = f"unexpected character '{tok}'"
        if str(tok) == ";":
            hint = "each statement goes on its own line; there are no semicolons"
    elif tok.type == "UNCLOSED_STRING":
        message = "this string is never closed"
        hint = 'close it with " on the same line'
    elif tokens[0].type == "NAME" and position == 1 and tok.type == "EQUAL":
        name = tokens[0]
        message = f"'{name} = ...' is not a statement"
        hint = (f"declare it with 'let {name} = ...' (an intermediate), 'const', 'param' or 'state', "
                f"or write its equation as 'der({name}) = ...'")
    elif position == 0 or (tokens[0].type == "NAME" and position == 1):
        message = f"expected a statement, found {_describe(tokens[0])}"
        hint = "statements start with model, time, state, param, const, input, nn, let, der(...), observe, or x' = ..."
        span = _span(tokens[0])
    else:
        if at_end and tokens[-1].end_line >= last_line:  # the file's last statement: it was cut short
            where = f"unexpected end of file after line {tokens[-1].end_line}"
        else:
            where = f"unexpected {_describe(tok)}"
        acceptable = _acceptable(tokens, position)
        expected = _expected_words(acceptable)
        message = f"{where}; expected {expected}" if expected else where
        if (tok.type in ("NAME", "NUMBER", "LPAR") and prev is not None
                and prev.type in ("NAME", "NUMBER", "RPAR", "RSQB") and "STAR" in acceptable):
            hint = f"write multiplication explicitly: {prev}*{tok}"
        elif tok.type == "COMPARE" and "STAR" in acceptable:  # after a whole comparison
            hint = "comparisons do not chain: write 'a < b and b < c'"
        elif prev is not None and prev.type == "EQUAL" and tokens[0].type == "PARAM" and tok.type == "LSQB":
            hint = "write bounds after the value: param k = 1.0 in [0, 10]"
        elif tok.type == "LPAR" and prev is not None and prev.type == "IN":
            hint = "bounds use square brackets: in [LO, HI]"
    rep.error(span, message, hint)


def _logical_lines(tokens: list[Token], rep: Reporter) -> list[list[Token]]:
    """Group tokens into statements; newlines inside brackets continue the statement.

    Bracket problems are reported here (and the statement is dropped), because a
    parser error far from an unclosed bracket would point at the wrong place.
    """
    statements: list[list[Token]] = []
    current: list[Token] = []
    stack: list[Token] = []
    broken = False

    def finish() -> None:
        nonlocal current, broken
        if current and not broken:
            statements.append(current)
        current, broken = [], False

    def never_closed() -> None:
        nonlocal broken
        opener = stack[-1]
        if not broken:  # after a mismatch, an opener left over is the same mistake
            rep.error(_span(opener), f"'{opener}' is never closed", f"add the matching '{')' if opener.type == 'LPAR' else ']'}'")
        stack.clear()
        broken = True

    for i, tok in enumerate(tokens):
        kind = tok.type
        if kind == "_NL":
            if stack:
                nxt = tokens[i + 1] if i + 1 < len(tokens) else None
                if nxt is None or nxt.type in STATEMENT_KEYWORDS:
                    never_closed()
                else:
                    continue
            finish()
            continue
        if kind in _OPEN:
            stack.append(tok)
            if len(stack) > MAX_NESTING and not broken:
                rep.error(_span(tok), f"brackets nested more than {MAX_NESTING} deep")
                broken = True
        elif kind in _CLOSE and stack:
            opener = stack.pop()
            if _OPEN[opener.type] != kind and not broken:
                rep.error(_span(tok), f"'{tok}' does not match the '{opener}' at line {opener.line}, column {opener.column}")
                broken = True
        current.append(tok)
    if stack:
        never_closed()
    finish()
    return statements


def parse(text: str, filename: str = "<string>") -> tuple[ast.SourceFile, Reporter]:
    """Parse model text; syntax errors go to the returned reporter (all of them).

    Examples
    --------
    >>> tree, rep = parse("state x = 1\\nder(x) = -x\\n")
    >>> [type(s).__name__ for s in tree.statements], rep.errors
    (['StateDecl', 'Derivative'], [])
    """
    lines = tuple(text.split("\n"))
    rep = Reporter(filename, lines)
    parser = lark_parser()
    tokens = list(parser.lex(text))
    # Where the file's text ends: blank lines and comments after it do not count.
    last_line = next((t.end_line for t in reversed(tokens) if t.type != "_NL"), 0)
    statements: list[ast.Statement] = []
    for stmt_tokens in _logical_lines(tokens, rep):
        interactive = parser.parse_interactive(start="line")
        try:
            for tok in stmt_tokens:
                interactive.feed_token(tok)
            statements.append(interactive.feed_eof(stmt_tokens[-1]))
        except UnexpectedToken as exc:
            _syntax_error(rep, exc, stmt_tokens, last_line)
        except UnexpectedInput as exc:  # any other Lark complaint: still located, never a traceback
            rep.error(Span(exc.line, exc.column, exc.line, exc.column + 1), "syntax error")
    return ast.SourceFile(filename, text, lines, tuple(statements)), rep
