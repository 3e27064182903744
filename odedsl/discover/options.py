"""What shapes a discovery, checked once so every later stage can trust it.

Every option a user can get wrong is checked here, before anything is sampled or
written, so a bad flag costs nothing and leaves no half-written folder behind.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from odedsl.errors import UsageError

#: Families a library may add to the polynomials, each applied to every input of a net.
FAMILIES = ("exp", "sin", "cos", "log", "rational")
OPTIMIZERS = ("both", "stlsq", "lasso")
SELECTIONS = ("cv", "aic")
DEFAULT_DEGREE = 3
_POLY = re.compile(r"poly(\d+)")


@dataclass(frozen=True)
class Options:
    """The settings of ``odedsl discover`` and ``FitResult.discover`` (see docs/discover.md).

    Examples
    --------
    >>> Options(library="poly2,exp").resolved_degree, Options(library="poly2,exp").families
    (2, ('exp',))
    """

    library: str = ""  # comma-separated: polyN (sets the degree), and FAMILIES
    degree: int | None = None  # polynomial degree; default 3 (or N of a polyN in library)
    terms: tuple[str, ...] = ()  # user candidates, in the model's own syntax
    optimizer: str = "both"  # proposals of STLSQ and the LASSO path, pooled
    threshold: float | None = None  # a fixed threshold instead of the automatic choice
    select: str = "cv"
    samples: int = 200  # dense times per experiment (and box points with box)
    box: bool = False
    folds: int = 5
    max_error: float = 0.25  # an output whose best expression errs more keeps its net
    refit: bool = True
    extrapolate: float = 3.0  # the judged horizon, in multiples of the data's time window
    families: tuple[str, ...] = field(init=False)
    resolved_degree: int = field(init=False)

    def __post_init__(self) -> None:
        degree, families = parse_library(self.library)
        if degree is not None and self.degree is not None and degree != self.degree:
            raise UsageError(f"--library poly{degree} and --degree {self.degree} disagree; give one of them")
        resolved = self.degree if self.degree is not None else degree if degree is not None else DEFAULT_DEGREE
        if resolved < 0:
            raise UsageError(f"--degree must be 0 or more, not {resolved}")
        object.__setattr__(self, "families", families)
        object.__setattr__(self, "resolved_degree", resolved)
        object.__setattr__(self, "terms", tuple(self.terms))
        _choice("--optimizer", self.optimizer, OPTIMIZERS)
        _choice("--select", self.select, SELECTIONS)
        if self.threshold is not None and not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise UsageError(f"--threshold must be a finite number >= 0, not {self.threshold}")
        if self.samples < 2:
            raise UsageError(f"--samples must be at least 2, not {self.samples}")
        if self.folds < 2:
            raise UsageError(f"the cross-validation needs at least 2 folds, not {self.folds}")
        if not (math.isfinite(self.max_error) and self.max_error > 0):
            raise UsageError(f"--max-error must be a positive number, not {self.max_error}")
        if not (math.isfinite(self.extrapolate) and self.extrapolate >= 1):
            raise UsageError(f"--extrapolate must be 1 or more (a multiple of the data's time window), "
                             f"not {self.extrapolate}")

    def describe_library(self) -> str:
        """The library in words, for the header of the file written."""
        parts = [f"polynomials of degree <= {self.resolved_degree} with cross terms"]
        parts += list(self.families)
        if self.terms:
            parts.append(f"{len(self.terms)} user term{'s' if len(self.terms) > 1 else ''}")
        return ", ".join(parts)


def parse_library(spec: str) -> tuple[int | None, tuple[str, ...]]:
    """``"poly3,exp,sin"`` -> ``(3, ("exp", "sin"))``; an unknown family is a ``UsageError`` naming the valid ones.

    Examples
    --------
    >>> parse_library("poly2, cos")
    (2, ('cos',))
    """
    degree, families = None, []
    for raw in spec.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        m = _POLY.fullmatch(name)
        if m:
            if degree is not None and int(m.group(1)) != degree:
                raise UsageError(f"--library names two polynomial degrees (poly{degree} and {name})")
            degree = int(m.group(1))
        elif name == "poly":
            degree = degree if degree is not None else DEFAULT_DEGREE
        elif name in FAMILIES:
            if name not in families:
                families.append(name)
        else:
            raise UsageError(f"--library: unknown family '{raw.strip()}'; valid: polyN (N = the degree, e.g. "
                             f"poly3), {', '.join(FAMILIES)}")
    return degree, tuple(families)


def _choice(flag: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise UsageError(f"{flag}: unknown choice '{value}'; valid: {', '.join(valid)}")
