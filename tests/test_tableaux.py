"""Butcher tableaux: each method converges with its stated orders, and bad tableaux fail at construction.

The reference stepper here is plain NumPy written from the definitions in the
``odedsl.solvers.tableaux`` docstring, independent of the solver core. Orders are
measured as the slope of log(error) against log(h), fitted with ``np.polyfit`` over
the smallest steps whose error is still well above round-off, on a nonlinear,
non-autonomous problem with a known solution:

    y1' = -g y2,  y2' = g y1,  g = cos(t) + y1² + y2²,
    y(t) = (cos(t + sin t), sin(t + sin t))      (|y| = 1, so g = 1 + cos t on it)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from odedsl.errors import UsageError
from odedsl.solvers.tableaux import TABLEAUX, Tableau, TableauError, UnknownMethodError, get_tableau

NAMES = list(TABLEAUX)
SLOPE_TOL = 0.3
THETAS = (0.3, 0.5, 0.77)
# Step counts per unit time: a half-octave grid; a fit uses the FIT_POINTS smallest steps
# whose error is above the floor (a factor of 4 in h).
GRID = np.unique(np.round(2.0 ** np.arange(0, 10.01, 0.5)).astype(int))
FIT_POINTS = 5
GLOBAL_FLOOR = 1e-12  # round-off accumulated over up to ~1000 steps stays below ~1e-14
LOCAL_FLOOR = 1e-13  # one step from an exact value: round-off ~1e-16
# Local errors are the RMS over several starting points, so that an accidental
# near-cancellation of the leading error term at one point does not bend the fit.
LOCAL_T0 = (0.0, 0.5, 1.0, 1.5, 2.0)


def rhs(t: float, y: np.ndarray) -> np.ndarray:
    g = np.cos(t) + y[0] ** 2 + y[1] ** 2
    return np.array([-g * y[1], g * y[0]])


def exact(t: float) -> np.ndarray:
    p = t + np.sin(t)
    return np.array([np.cos(p), np.sin(p)])


def stages(tab: Tableau, t: float, y: np.ndarray, h: float, dense: bool = False) -> np.ndarray:
    """The k_i of one step (and the extra dense-output stages when ``dense``), one per row."""
    s = tab.b.size
    n_stages = tab.dense.shape[0] if dense else s
    K = np.zeros((n_stages, y.size))
    for i in range(s):
        K[i] = rhs(t + tab.c[i] * h, y + h * (tab.a[i, :i] @ K[:i]))
    for j in range(n_stages - s):
        K[s + j] = rhs(t + tab.extra_c[j] * h, y + h * (tab.extra_a[j, : s + j] @ K[: s + j]))
    return K


def dense_value(tab: Tableau, y: np.ndarray, h: float, K: np.ndarray, theta: float) -> np.ndarray:
    w = sum(tab.dense[:, m] * theta ** (m + 1) for m in range(tab.dense.shape[1]))
    return y + h * (w @ K)


def global_error(tab: Tableau, n: int) -> float:
    h = 1.0 / n
    y = exact(0.0)
    for step in range(n):
        y = y + h * (tab.b @ stages(tab, step * h, y, h))
    return float(np.linalg.norm(y - exact(1.0)))


def fitted_slope(error_of_n, floor: float) -> tuple[float, list[int], list[float]]:
    """Slope of log(err) vs log(h) over the FIT_POINTS smallest h with err >= floor."""
    ns, errs = [], []
    for n in GRID:
        e = error_of_n(int(n))
        if e < floor:
            break
        ns.append(int(n))
        errs.append(e)
    ns, errs = ns[-FIT_POINTS:], errs[-FIT_POINTS:]
    assert len(ns) >= 3, f"too few points above the floor: {ns}, {errs}"
    slope = np.polyfit(np.log(1.0 / np.array(ns)), np.log(errs), 1)[0]
    return float(slope), ns, errs


def local_error(tab: Tableau, n: int, what) -> float:
    """RMS over LOCAL_T0 of |approximation - exact| after one step of h = 1/n from the exact value."""
    h = 1.0 / n
    sq = 0.0
    for t0 in LOCAL_T0:
        y = exact(t0)
        K = stages(tab, t0, y, h, dense=True)
        approx, t_ref = what(tab, y, h, K)
        sq += float(np.sum((approx - exact(t0 + t_ref * h)) ** 2))
    return float(np.sqrt(sq / len(LOCAL_T0)))


# ----------------------------------------------------------------------------- orders


@pytest.mark.parametrize("name", NAMES)
def test_global_error_converges_with_the_order(name):
    tab = TABLEAUX[name]
    slope, ns, errs = fitted_slope(lambda n: global_error(tab, n), GLOBAL_FLOOR)
    assert abs(slope - tab.order) <= SLOPE_TOL, (slope, ns, errs)


@pytest.mark.parametrize("name", [n for n in NAMES if TABLEAUX[n].b_err is not None])
def test_embedded_solution_has_error_order(name):
    tab = TABLEAUX[name]
    s = tab.b.size

    def embedded(tab, y, h, K):
        return y + h * ((tab.b - tab.b_err) @ K[:s]), 1.0

    slope, ns, errs = fitted_slope(lambda n: local_error(tab, n, embedded), LOCAL_FLOOR)
    assert abs(slope - (tab.error_order + 1)) <= SLOPE_TOL, (slope, ns, errs)


def test_dop853_second_estimator_is_third_order():
    tab = TABLEAUX["dop853"]
    s = tab.b.size

    def embedded3(tab, y, h, K):
        return y + h * ((tab.b - tab.b_err3) @ K[:s]), 1.0

    slope, ns, errs = fitted_slope(lambda n: local_error(tab, n, embedded3), LOCAL_FLOOR)
    assert abs(slope - 4) <= SLOPE_TOL, (slope, ns, errs)


@pytest.mark.parametrize("theta", THETAS)
@pytest.mark.parametrize("name", NAMES)
def test_dense_output_has_dense_order(name, theta):
    tab = TABLEAUX[name]

    def interpolated(tab, y, h, K):
        return dense_value(tab, y, h, K, theta), theta

    slope, ns, errs = fitted_slope(lambda n: local_error(tab, n, interpolated), LOCAL_FLOOR)
    assert abs(slope - (tab.dense_order + 1)) <= SLOPE_TOL, (slope, ns, errs)


@pytest.mark.parametrize("name", NAMES)
def test_dense_output_ends_at_the_step(name):
    tab = TABLEAUX[name]
    y, h = exact(0.4), 0.1
    K = stages(tab, 0.4, y, h, dense=True)
    y_new = y + h * (tab.b @ K[: tab.b.size])
    np.testing.assert_allclose(dense_value(tab, y, h, K, 1.0), y_new, rtol=0, atol=1e-14)
    np.testing.assert_allclose(dense_value(tab, y, h, K, 0.0), y, rtol=0, atol=0)
    np.testing.assert_allclose(tab.dense_weights(0.77), tab.dense @ 0.77 ** np.arange(1, tab.dense.shape[1] + 1),
                               rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize(("name", "scipy_method"), [("bosh3", "RK23"), ("dopri5", "RK45"), ("dop853", "DOP853")])
def test_matches_scipy_step_and_dense_output(name, scipy_method):
    """One step of h = 0.5 against SciPy's independent implementation of the same method."""
    from scipy.integrate import solve_ivp

    tab = TABLEAUX[name]
    t0, h = 0.25, 0.5
    y0 = exact(t0)
    sol = solve_ivp(rhs, (t0, t0 + h), y0, method=scipy_method, first_step=h, rtol=1e3, atol=1e3,
                    dense_output=True)
    assert sol.t.tolist() == [t0, t0 + h]
    K = stages(tab, t0, y0, h, dense=True)
    np.testing.assert_allclose(y0 + h * (tab.b @ K[: tab.b.size]), sol.y[:, -1], rtol=0, atol=1e-14)
    for theta in THETAS:
        np.testing.assert_allclose(dense_value(tab, y0, h, K, theta), sol.sol(t0 + theta * h), rtol=0,
                                   atol=1e-14)


# ----------------------------------------------------------------------------- structure


@pytest.mark.parametrize("name", NAMES)
def test_arrays_are_read_only_float64(name):
    tab = TABLEAUX[name]
    for field in ("c", "a", "b", "b_err", "b_err3", "dense", "extra_c", "extra_a"):
        arr = getattr(tab, field)
        if arr is None:
            continue
        assert arr.dtype == np.float64 and not arr.flags.writeable, field
    with pytest.raises(ValueError):
        tab.a[1, 0] = 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        tab.order = 3  # type: ignore[misc]


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_metadata(name):
    tab = TABLEAUX[name]
    s, sd = tab.b.size, tab.dense.shape[0]
    assert tab.name == name and tab.source
    assert tab.a.shape == (s, s) and tab.c.shape == (s,)
    assert tab.extra_c.shape == (sd - s,) and tab.extra_a.shape == (sd - s, sd - 1)
    assert (tab.error_order is None) == (tab.b_err is None)
    if tab.fsal:
        assert tab.c[-1] == 1.0 and np.array_equal(tab.a[-1], tab.b)


def test_fixed_step_methods_get_f_at_the_new_point_as_their_extra_stage():
    for name in ("euler", "midpoint", "rk4"):
        tab = TABLEAUX[name]
        assert tab.extra_c.tolist() == [1.0]
        np.testing.assert_array_equal(tab.extra_a[0], tab.b)


# ----------------------------------------------------------------------------- bad tableaux


def _corrupt(name: str, field: str, index, delta: float = 1e-6) -> dict:
    tab = TABLEAUX[name]
    arr = np.array(getattr(tab, field), dtype=float)
    arr[index] += delta
    return {field: arr}


def _swap_in_row(name: str, row: int, j: int, k: int) -> dict:
    """Swap two coefficients of a row: the row sum stays, the order conditions break."""
    a = np.array(TABLEAUX[name].a)
    a[row, j], a[row, k] = a[row, k], a[row, j]
    return {"a": a}


BAD = [
    # one coefficient of a mistyped: its row no longer sums to c
    ("dopri5", _corrupt("dopri5", "a", (4, 2)), "row sums of a equal c"),
    ("dop853", _corrupt("dop853", "a", (8, 5), 1e-9), "row sums of a equal c"),
    ("tsit5", _corrupt("tsit5", "c", 3), "row sums of a equal c"),
    # an entry on or above the diagonal
    ("rk4", _corrupt("rk4", "a", (1, 2), 0.5), "strictly lower triangular"),
    # weights that do not sum to one (and, for FSAL, no longer equal the last row of a)
    ("rk4", _corrupt("rk4", "b", 0), "order 1 condition sum(b) == 1"),
    ("dopri5", _corrupt("dopri5", "b", 2), "FSAL: a[-1] == b"),
    # error weights that do not sum to zero
    ("bosh3", _corrupt("bosh3", "b_err", 1), "sum(b_err) == 0"),
    ("dop853", _corrupt("dop853", "b_err3", 0), "sum(b_err3) == 0"),
    # row sums intact, a higher order condition broken
    ("rk4", {"a": np.array([[0, 0, 0, 0], [0.5, 0, 0, 0], [0.5, 0, 0, 0], [0, 0, 1, 0]])},
     "order 3 condition sum(b*(A@c)) == 1/6"),
    ("dopri5", _swap_in_row("dopri5", 4, 1, 2), "order 3 condition"),
    # dense output that does not end at y_new, or is not even first order
    ("tsit5", _corrupt("tsit5", "dense", (3, 2)), "dense output at θ = 1 reproduces b"),
    ("dop853", _corrupt("dop853", "dense", (13, 3)), "dense output at θ = 1 reproduces b"),
    ("bosh3", {"dense": np.array(TABLEAUX["bosh3"].dense) + np.outer([1, 0, 0, 0], [1, -1, 0])},
     "dense output order 1 condition"),
    # extra stage that does not sum to its node
    ("rk4", _corrupt("rk4", "extra_a", (0, 3)), "row sums of extra_a equal extra_c"),
    # FSAL flag on a method whose last row is not b
    ("rk4", {"fsal": True}, "FSAL"),
    # the wrong number of error weights
    ("bosh3", {"b_err": np.zeros(3)}, "b_err has shape"),
    # an order the coefficients do not have
    ("bosh3", {"order": 4}, "order 4 condition"),
    ("dopri5", {"dense_order": 5}, "dense_order <= polynomial degree"),
]


@pytest.mark.parametrize(("name", "changes", "fragment"), BAD)
def test_corrupted_tableau_fails_at_construction(name, changes, fragment):
    with pytest.raises(ValueError) as info:
        dataclasses.replace(TABLEAUX[name], **changes)
    assert isinstance(info.value, TableauError)
    message = str(info.value)
    assert repr(name) in message and fragment in message, message
    assert info.value.tableau == name


def test_extra_stage_may_not_use_later_stages():
    tab = TABLEAUX["dop853"]
    extra_a = np.array(tab.extra_a)
    extra_a[0, 13] = 0.5  # stage 14 using stage 15
    extra_a[0, 0] -= 0.5
    with pytest.raises(TableauError, match="extra stages use only earlier stages"):
        dataclasses.replace(tab, extra_a=extra_a)


def test_unchanged_copy_is_accepted():
    for tab in TABLEAUX.values():
        assert dataclasses.replace(tab).order == tab.order


# ----------------------------------------------------------------------------- registry


def test_get_tableau_returns_the_registered_object():
    for name, tab in TABLEAUX.items():
        assert get_tableau(name) is tab


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        get_tableau("rk45")
    err = info.value
    assert isinstance(err, UnknownMethodError) and isinstance(err, UsageError)
    assert err.exit_code == 2
    message = str(err)
    assert "'rk45'" in message
    for name in NAMES:
        assert name in message
    assert err.valid == NAMES
