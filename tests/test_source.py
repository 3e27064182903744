"""Reading model files: what is not a model file at all gets a clear, located message.

Covers ``odedsl.lang.source`` through the public ``odedsl.load``/``odedsl.loads`` and
through ``odedsl check`` as a separate process (exit code 1, never a traceback).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import odedsl
from odedsl.cli import main as cli_main
from odedsl.lang.source import decode

ROOT = Path(__file__).resolve().parents[1]
GOOD = "state x = 1\nder(x) = -x\n"


def _random_bytes(seed: int, n: int = 512, nul: bool = True) -> bytes:
    data = random.Random(seed).randbytes(n)
    return data if nul else data.replace(b"\0", b"\x80")


# (file name, bytes, line, column, phrases in message or hint)
UNREADABLE = [
    ("empty.ode", b"", 1, 1, ["the file is empty", "at least one 'state NAME = VALUE'"]),
    ("blank.ode", b"  \n\t\n\n", 1, 1, ["the file is empty"]),
    ("comments.ode", b"# a model\n\n   # still nothing\n", 1, 1,
     ["the file contains no statements, only comments"]),
    ("nul.ode", b"state x = 1\nder(x) = -x\0\n", 2, 12, ["binary file", "NUL byte", "plain UTF-8 text"]),
    ("nul_after_accent.ode", "# caf\u00e9\n# \u00fc\0".encode(), 2, 4, ["NUL byte"]),
    ("elf.ode", b"\x7fELF\x02\x01\x01\0\0\0", 1, 8, ["binary file"]),
    ("random.ode", _random_bytes(0), None, None, ["binary file"]),
    ("latin1.ode", b"state x = 1\nder(x) = -x # caf\xe9\n", 2, 18,
     ["not valid UTF-8 text (byte 0xe9)", "save the file as UTF-8"]),
    ("after_multibyte.ode", "# \u00e9\n# \u00fc\u00fc ".encode() + b"\xff\n", 2, 6, ["byte 0xff"]),
    ("truncated_multibyte.ode", b"state x = 1\nder(x) = -x # \xc3", 2, 15, ["byte 0xc3"]),
    ("cr_only_latin1.ode", b"state x = 1\rder(x) = -x\r# \xe9\r", 3, 3, ["byte 0xe9"]),
    ("bom_latin1.ode", b"\xef\xbb\xbf\xe9tat x = 1\n", 1, 1, ["byte 0xe9"]),
    ("random_no_nul.ode", _random_bytes(1, nul=False), None, None, ["not valid UTF-8 text"]),
]


@pytest.mark.parametrize("name, data, line, column, phrases", UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_not_a_model_file(tmp_path, name, data, line, column, phrases):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(odedsl.ModelError) as info:
        odedsl.load(path)
    [d] = info.value.diagnostics
    assert d.file == str(path)
    if line is not None:
        assert (d.line, d.column) == (line, column)
    else:  # random data: wherever the first bad byte is, but a real position
        assert d.line >= 1 and d.column >= 1
    text = d.message + "\n" + (d.hint or "")
    for phrase in phrases:
        assert phrase in text
    # the same bytes given to loads() are reported the same way
    with pytest.raises(odedsl.ModelError) as again:
        odedsl.loads(data, name=name)
    assert [(x.line, x.column, x.message) for x in again.value.diagnostics] == [(d.line, d.column, d.message)]


def test_first_nul_byte_is_located_even_after_bad_utf8():
    with pytest.raises(odedsl.ModelError) as info:
        decode(b"\xff\nab\0", "f.ode")
    assert (info.value.line, info.value.column) == (2, 3)
    assert "NUL byte" in info.value.message


@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbf" + GOOD.encode(),
    GOOD.replace("\n", "\r\n").encode(),
    b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode(),
    GOOD.replace("\n", "\r").encode(),
    GOOD.rstrip("\n").encode(),  # no newline at the end
    b"\xef\xbb\xbf# \xc3\xa9t\xc3\xa9\r\nstate x = 1\r\nder(x) = -x",
], ids=["bom", "crlf", "bom_crlf", "cr", "no_final_newline", "bom_crlf_accents"])
def test_accepted_encodings_and_line_endings(tmp_path, data):
    path = tmp_path / "m.ode"
    path.write_bytes(data)
    model = odedsl.load(path)
    assert [s.name for s in model.states] == ["x"]
    assert [str(r) for r in model.rhs] == ["-x"]
    assert "\r" not in model.source and "\ufeff" not in model.source
    assert [str(r) for r in odedsl.loads(data).rhs] == ["-x"]


def test_loads_text_with_bom_and_crlf():
    assert [str(r) for r in odedsl.loads("\ufeff" + GOOD.replace("\n", "\r\n")).rhs] == ["-x"]


@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbfstate x = $\r\nder(x) = -x\r\n",
    b"state x = $\r\nder(x) = -x\r\n",
    b"state x = $\rder(x) = -x\r",
])
def test_positions_ignore_bom_and_carriage_returns(tmp_path, data):
    path = tmp_path / "m.ode"
    path.write_bytes(data)
    with pytest.raises(odedsl.ModelError) as info:
        odedsl.load(path)
    [d] = info.value.diagnostics
    assert (d.line, d.column, d.message) == (1, 11, "unexpected character '$'")
    assert d.source_line == "state x = $"


def test_error_on_later_line_of_crlf_file(tmp_path):
    path = tmp_path / "m.ode"
    path.write_bytes(b"state x = 1\r\n\r\nder(x) = -y\r\n")
    with pytest.raises(odedsl.ModelError) as info:
        odedsl.load(path)
    [d] = info.value.diagnostics
    assert (d.line, d.column) == (3, 11)
    assert d.source_line == "der(x) = -y"
    assert d.format().splitlines()[1:] == ["  der(x) = -y", "            ^"]


def test_missing_file(tmp_path):
    path = tmp_path / "nope.ode"
    with pytest.raises(odedsl.InputError, match="nope.ode: no such model file"):
        odedsl.load(path)
    assert odedsl.InputError.exit_code == 1


def test_directory(tmp_path):
    with pytest.raises(odedsl.InputError, match="is a directory, not a model file"):
        odedsl.load(tmp_path)


def test_load_accepts_str_and_path(tmp_path):
    path = tmp_path / "m.ode"
    path.write_text(GOOD, encoding="utf-8")
    assert odedsl.load(str(path)).filename == str(path)
    assert odedsl.load(path).filename == str(path)


# -- the same through the command line ------------------------------------------------------


def _cases(tmp_path: Path) -> dict[str, tuple[Path, str, str]]:
    """Case -> (path, how stderr's line about it starts, what that line says)."""
    out = {}
    for name, data, line, column, phrases in UNREADABLE:
        path = tmp_path / name
        path.write_bytes(data)
        where = f"{path}:{line}:{column}: error: " if line is not None else f"{path}:"
        out[name] = (path, where, phrases[0])
    out["missing"] = (tmp_path / "missing.ode", f"error: {tmp_path / 'missing.ode'}: ", "no such model file")
    out["directory"] = (tmp_path, f"error: {tmp_path}: ", "is a directory, not a model file")
    return out


def _says(stderr: str, start: str, phrase: str) -> bool:
    return any(line.startswith(start) and phrase in line for line in stderr.splitlines())


def test_check_command_on_files_that_are_not_models(tmp_path, capsys):
    """Each case alone: exit code 1 and the message (in-process, so it is fast)."""
    for name, (path, start, phrase) in _cases(tmp_path).items():
        assert cli_main(["check", str(path)]) == 1, name
        err = capsys.readouterr().err
        assert _says(err, start, phrase), (name, err)
        assert "Traceback" not in err and "internal error" not in err


def test_check_command_subprocess(tmp_path):
    """All cases in one real process: exit code 1, every message, no traceback."""
    cases = _cases(tmp_path)
    good = tmp_path / "good.ode"
    good.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("ODEDSL_DEBUG", None)
    run = subprocess.run([sys.executable, "-m", "odedsl", "check", str(good), *(str(p) for p, _, _ in cases.values())],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    assert run.stdout.startswith(f"ok  {good}: ")
    for name, (_, start, phrase) in cases.items():
        assert _says(run.stderr, start, phrase), name


# -- any bytes at all --------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_any_bytes_compile_or_give_located_errors(data):
    try:
        odedsl.loads(data, name="fuzz.ode")
    except odedsl.ModelError as exc:
        for d in exc.diagnostics:
            assert d.line >= 1 and d.column >= 1
            assert d.format().startswith(f"fuzz.ode:{d.line}:{d.column}: error: ")
