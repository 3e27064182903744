"""Compiled CPU training (issue #6): the Numba objective equals the Torch one, the two backends' Adam runs
agree, and the backend choice follows its rules."""

from __future__ import annotations

import numpy as np
import pytest

import odedsl
from conftest import MODELS
from odedsl.errors import NumericalError, UsageError
from odedsl.fit.data import read_dataset
from odedsl.fit.loss import scaling
from odedsl.fit.numba_objective import NumbaObjective
from odedsl.fit.run import NUMBA_MAX_WEIGHTS, Settings, choose_backend
from odedsl.fit.torch_objective import TorchObjective

DATA = MODELS / "data"

MIXED = """model mixed
param k = 0.7 in [0.1, 3]
param s = 0.2 in [0.01, 1]
param c = 1.5
input drive
state x = 1.0
state y = 0.2
nn U: 2 -> 1, hidden = [5], activation = softplus
der(x) = -k*x + U(x, drive)[0] + c*y
der(y) = x - y
observe xo = x ~ lognormal(s)
observe yo = y^2 + 1 ~ normal(0.1)
"""

MIXED_CSV = """experiment,t,xo,yo,drive,x
a,0,1.0,1.05,0.0,1.0
a,0.5,0.8,,0.5,
a,1.0,0.7,1.2,1.0,
a,1.0,0.72,1.21,1.0,
a,2.0,0.6,1.3,0.0,
b,0.3,2.0,1.1,1.0,2.0
b,1.1,1.5,1.4,0.5,
b,2.5,1.0,1.6,0.0,
"""


def objectives(model, path, method="dopri5", y0_from_data=False, checkpoint_every=None):
    data = read_dataset(model, path, y0_from_data=y0_from_data)
    sc = scaling(data)
    return (NumbaObjective(model, data, sc, method, rtol=1e-9, atol=1e-9, l2=0.01, checkpoint_every=checkpoint_every),
            TorchObjective(model, data, sc, method, rtol=1e-9, atol=1e-9, l2=0.01))


CASES = [
    ("lotka_volterra_ude", MODELS / "lotka_volterra_ude.ode", DATA / "lotka_volterra_ude.csv"),
    ("hare_lynx", MODELS / "hare_lynx.ode", DATA / "hare_lynx.csv"),
    ("sir", MODELS / "sir.ode", DATA / "sir_boarding_school_1978.csv"),
    ("spiral", MODELS / "spiral_neural_ode.ode", DATA / "spiral.csv"),
]


@pytest.mark.parametrize("name, model_path, data_path", CASES, ids=[c[0] for c in CASES])
def test_numba_objective_equals_torch_objective(name, model_path, data_path):
    """Same start, same loss, same gradient (the same steps, so equal to rounding: 1e-9 relative)."""
    model = odedsl.load(model_path)
    nb, tt = objectives(model, data_path)
    x = nb.get_x()
    assert np.array_equal(x, tt.get_x())  # the same parameterisation and initial weights
    x = x + np.random.default_rng(0).normal(scale=0.05, size=x.size)
    ln, gn = nb.value_and_grad(x)
    lt, gt = tt.value_and_grad(x)
    assert abs(ln - lt) <= 1e-9 * abs(lt)
    assert np.abs(gn - gt).max() <= 1e-9 * np.abs(gt).max()


@pytest.mark.parametrize("method, every", [("dopri5", None), ("tsit5", 2), ("rk4", None), ("midpoint", 1)])
def test_numba_objective_with_experiments_inputs_gaps_noise_and_initial_values(tmp_path, method, every):
    """Two experiments with their own times and inputs, missing cells, replicates, lognormal and normal noise
    with a fitted sigma, y0 from the data; adaptive and fixed steps, stages stored or recomputed."""
    model = odedsl.loads(MIXED, name="mixed.ode")
    path = tmp_path / "d.csv"
    path.write_text(MIXED_CSV)
    nb, tt = objectives(model, path, method, y0_from_data=True, checkpoint_every=every)
    x = nb.get_x() + np.random.default_rng(1).normal(scale=0.1, size=nb.get_x().size)
    ln, gn = nb.value_and_grad(x)
    lt, gt = tt.value_and_grad(x)
    assert abs(ln - lt) <= 1e-9 * abs(lt)
    assert np.abs(gn - gt).max() <= 1e-9 * np.abs(gt).max()
    # and against central differences (which see the adaptive steps move: agreement to ~rtol/eps only)
    for j in range(0, x.size, 3):
        e = np.zeros(x.size)
        e[j] = 1e-6
        fd = (nb.value_and_grad(x + e)[0] - nb.value_and_grad(x - e)[0]) / 2e-6
        assert abs(gn[j] - fd) <= 1e-4 * max(1.0, abs(fd)), (j, gn[j], fd)  # FD across adaptive steps: ~tol/eps


def test_backends_follow_the_same_loss_trajectory(tmp_path):
    """Adam with the same seed and settings on both backends: the same losses to floating-point noise."""
    model = odedsl.load(MODELS / "lotka_volterra_ude.ode")
    runs = {b: model.fit(DATA / "lotka_volterra_ude.csv", backend=b, max_iters=15, polish_iters=0, rtol=1e-8,
                         atol=1e-8) for b in ("numba", "torch")}
    ln = np.array([h[1] for h in runs["numba"].history])
    lt = np.array([h[1] for h in runs["torch"].history])
    assert ln.shape == lt.shape == (15,)
    assert np.abs(ln - lt).max() <= 1e-8 * np.abs(lt).max()
    assert runs["numba"].settings["backend"] == "numba" and runs["torch"].settings["backend"] == "torch"
    np.testing.assert_allclose(runs["numba"].weights, runs["torch"].weights, rtol=0, atol=1e-8)


def test_backend_choice():
    small = odedsl.load(MODELS / "lotka_volterra_ude.ode")
    assert choose_backend(small, Settings())[0] == "numba"
    assert choose_backend(small, Settings(gradient="checkpoint"))[0] == "numba"  # bounded memory there too
    for settings, why in [(Settings(shooting=4), "multiple shooting"), (Settings(method="dop853"), "dop853"),
                          (Settings(gradient="adjoint"), "adjoint"), (Settings(device="cuda"), "GPU")]:
        backend, reason = choose_backend(small, settings)
        assert backend == "torch" and why in reason
        with pytest.raises(UsageError, match="--backend numba is not possible"):
            choose_backend(small, Settings(**{**vars(settings), "backend": "numba"}))
    width = int(np.sqrt(NUMBA_MAX_WEIGHTS)) + 10
    big = odedsl.loads(f"state x = 1\nnn U: 1 -> 1, hidden = [{width}, {width}]\nder(x) = U(x)[0]\n", name="big.ode")
    backend, reason = choose_backend(big, Settings())
    assert backend == "torch" and "large" in reason
    assert choose_backend(big, Settings(backend="torch")) == ("torch", "as asked")


def test_a_failed_solve_names_its_experiment(tmp_path):
    model = odedsl.loads(MIXED.replace("der(y) = x - y", "der(y) = x - y + 1e12*k*y^3"), name="blowup.ode")
    path = tmp_path / "d.csv"
    path.write_text(MIXED_CSV)
    nb, _ = objectives(model, path, y0_from_data=True)
    with pytest.raises(NumericalError, match="experiment 'a'.*(NaN or infinite|step size)"):
        nb.value_and_grad(nb.get_x())
