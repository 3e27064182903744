"""The documentation's examples are real: every ``>>>`` session in docs/ runs as shown."""

from __future__ import annotations

import doctest

import pytest

from conftest import ROOT

DOCS = sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("path", [p for p in DOCS if ">>> " in p.read_text()], ids=lambda p: p.name)
def test_doc_sessions_run(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = doctest.testfile(str(path), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_docs_link_targets_exist():
    for path in [*DOCS, ROOT / "README.md"]:
        text = path.read_text()
        for target in ("docs/language.md", "docs/cli.md", "docs/python-api.md", "docs/performance.md",
                       "docs/tutorial-torch.md"):
            if f"]({target})" in text:
                assert (ROOT / target).exists(), f"{path.name} links to missing {target}"
