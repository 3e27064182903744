"""Generate the synthetic data sets of the neural-ODE examples (see README.md here).

    python models/data/make_synthetic.py      # rewrites the four files below, next to this script

- ``lotka_volterra_ude.csv``: the training data of the universal differential
  equation example of Rackauckas et al. 2020 ("Universal differential equations
  for scientific machine learning", arXiv:2001.04385, the Lotka–Volterra
  scenario): the true Lotka–Volterra system, simulated by odedsl itself from
  ``models/lotka_volterra.ode``, sampled at t = 0, 0.1, ..., 3, with Gaussian
  noise of standard deviation 5% of each series' mean, as in the paper's code
  (``noise_magnitude = 5e-2``, ``X .+ (noise_magnitude * x̄) .* randn(...)``).
  Columns ``t, prey_count, pred_count`` (the ``observe`` columns of
  ``models/lotka_volterra_ude.ode``).
- ``lotka_volterra_ude_truth.csv``: the same system without noise on t = 0, 0.05,
  ..., 10, columns ``t, prey, pred``: the truth to compare an extrapolation with.
- ``spiral.csv``: the spiral of the neural ODE paper (Chen et al. 2018) as in
  torchdiffeq's ``examples/ode_demo.py``: dz/dt = (z**3) @ A (z a row vector,
  cubes elementwise), A = [[-0.1, 2.0], [-2.0, -0.1]], z(0) = (2, 0), here at
  t = 0, 0.1, ..., 10 (the demo uses 1000 points on [0, 25]); no noise, as in the
  demo. Columns ``t, z1, z2`` (the states of ``models/spiral_neural_ode.ode``,
  which has no ``observe``).
- ``spiral_truth.csv``: the same spiral on t = 0, 0.01, ..., 25.

Deterministic: one fixed seed, solves at rtol 1e-10 with dop853; values are
written with 7 significant digits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import odedsl

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent
SEED = 2020
TOL = {"method": "dop853", "rtol": 1e-10, "atol": 1e-12}

# The paper's parameters, dx = αx − βxy, dy = γxy − δy with α, β, γ, δ = 1.3, 0.9, 0.8, 1.8, in the names of
# models/lotka_volterra.ode: dprey = alpha*prey − beta*prey*pred, dpred = delta*prey*pred − gamma*pred.
LV_PARAMS = {"alpha": 1.3, "beta": 0.9, "delta": 0.8, "gamma": 1.8}
LV_Y0 = {"prey": 0.44249296, "pred": 4.6280594}

# torchdiffeq's ode_demo.py: true_A = [[-0.1, 2.0], [-2.0, -0.1]], dy/dt = torch.mm(y**3, true_A), written out.
SPIRAL = """
model spiral_true "the true spiral of torchdiffeq's ode_demo: dz/dt = (z^3) A"
state z1 = 2.0
state z2 = 0.0
der(z1) = -0.1*z1^3 - 2.0*z2^3
der(z2) = 2.0*z1^3 - 0.1*z2^3
"""


def grid(t_end: float, step: float) -> np.ndarray:
    return np.round(np.linspace(0.0, t_end, round(t_end / step) + 1), 10)


def write(name: str, header: list[str], columns: list[np.ndarray]) -> None:
    rows = np.column_stack(columns)
    lines = [",".join(header)] + [",".join(f"{v:.7g}" for v in row) for row in rows]
    (HERE / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote models/data/{name}: {rows.shape[0]} rows")


def lotka_volterra(rng: np.random.Generator) -> None:
    m = odedsl.load(MODELS / "lotka_volterra.ode")
    t = grid(3.0, 0.1)
    sol = m.simulate(t, params=LV_PARAMS, y0=LV_Y0, **TOL)
    x, y = sol["prey"], sol["pred"]
    noisy = [v + 0.05 * v.mean() * rng.standard_normal(v.size) for v in (x, y)]
    write("lotka_volterra_ude.csv", ["t", "prey_count", "pred_count"], [t, *noisy])
    t = grid(10.0, 0.05)
    sol = m.simulate(t, params=LV_PARAMS, y0=LV_Y0, **TOL)
    write("lotka_volterra_ude_truth.csv", ["t", "prey", "pred"], [t, sol["prey"], sol["pred"]])


def spiral() -> None:
    m = odedsl.loads(SPIRAL, "spiral_true")
    t = grid(10.0, 0.1)
    sol = m.simulate(t, **TOL)
    write("spiral.csv", ["t", "z1", "z2"], [t, sol["z1"], sol["z2"]])
    t = grid(25.0, 0.01)
    sol = m.simulate(t, **TOL)
    write("spiral_truth.csv", ["t", "z1", "z2"], [t, sol["z1"], sol["z2"]])


if __name__ == "__main__":
    lotka_volterra(np.random.default_rng(SEED))
    spiral()
