"""UniPC (B(h) = bh2, order 2, data prediction) in flow sigmas: Wan's default sampler.

Mirrors diffusers `UniPCMultistepScheduler(prediction_type="flow_prediction",
use_flow_sigmas=True, flow_shift=shift, solver_order=2, predict_x0=True,
solver_type="bh2", lower_order_final=True, disable_corrector=[],
final_sigmas_type="zero", timestep_spacing="linspace", thresholding=False)`,
the scheduler config Wan2.1 ships with.

Each step i: m_i = x - sigma_i * v (x0 prediction); if a predictor step led here,
the UniC corrector refines x with m_i (no extra model call); then the UniP
predictor moves to sigma(i+1). Orders warm up (1, then 2) and the last step is
first order, so it returns m_i exactly. Coefficients follow diffusers'
`multistep_uni_p_bh_update` / `multistep_uni_c_bh_update` with predict_x0=True.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from vdrt.samplers.base import Sampler, SamplerConfig
from vdrt.samplers.schedules import log_snr, unipc_schedule


@dataclasses.dataclass(frozen=True)
class UniPCConfig(SamplerConfig):
    pass


class UniPC(Sampler):
    name = "unipc"
    Config = UniPCConfig

    def _schedule(self, n: int):
        return unipc_schedule(n, self.config.shift, self.config.num_train_timesteps)

    def _reset(self) -> None:
        self._x0s: list[torch.Tensor] = []  # x0 predictions of the last (up to 2) steps, oldest first
        self._last_x: torch.Tensor | None = None  # x before the last predictor
        self._order = 0  # order of the last predictor

    def _step(self, x: torch.Tensor, v: torch.Tensor, i: int) -> torch.Tensor:
        m = x - self._s[i] * v
        if self._last_x is not None:
            x = self._correct(m, x, i)
        self._x0s = (self._x0s + [m])[-2:]
        order = min(2, self.num_steps - i, len(self._x0s))  # lower_order_final + warm-up
        self._last_x, self._order = x, order
        return self._predict(x, order, i)

    def _coeffs(self, i_from: int, i_to: int, i_older: int | None):
        """(sigma'/sigma, alpha' * h_phi_1, hh = -h, rk) for the step sigma(i_from) -> sigma(i_to).

        h_phi_1 = e^hh - 1 is also B(h) for bh2; rk = (lambda(i_older) - lambda(i_from)) / h.
        """
        s0, st = self._s[i_from], self._s[i_to]
        lam0 = log_snr(s0)
        h = log_snr(st) - lam0
        hh = -h
        h_phi_1 = math.expm1(hh)  # B(h) = h_phi_1 for bh2
        rk = None if i_older is None else (log_snr(self._s[i_older]) - lam0) / h
        return st / s0, (1 - st) * h_phi_1, hh, rk

    def _predict(self, x: torch.Tensor, order: int, i: int) -> torch.Tensor:
        """UniP: x at sigma(i) -> sigma(i+1) from m_i (and m_{i-1} at order 2)."""
        m0 = self._x0s[-1]
        ratio, a_phi, _, rk = self._coeffs(i, i + 1, i - 1 if order == 2 else None)
        x_t = ratio * x - a_phi * m0
        if order == 2:  # rhos_p = 0.5; B(h) = h_phi_1
            x_t = x_t - a_phi * 0.5 * (self._x0s[-2] - m0) / rk
        return x_t

    def _correct(self, m_t: torch.Tensor, x_t: torch.Tensor, i: int) -> torch.Tensor:
        """UniC: redo the last predictor sigma(i-1) -> sigma(i) with m_i known."""
        order, m0 = self._order, self._x0s[-1]
        ratio, a_phi, hh, rk = self._coeffs(i - 1, i, i - 2 if order == 2 else None)
        x = ratio * self._last_x - a_phi * m0
        rho_d, rho_t = _corrector_rhos(hh, rk)
        corr = rho_t * (m_t - m0)
        if order == 2:
            corr = corr + rho_d * (self._x0s[-2] - m0) / rk
        return x - a_phi * corr


def _corrector_rhos(hh: float, rk: float | None) -> tuple[float, float]:
    """UniC weights (rho for D1 of the older step, rho for D1_t) for bh2.

    Order 1: rho_t = 0.5. Order 2: solve [[1, 1], [rk, 1]] rho = b with
    b_k = k! * phi_{k+1}(hh) h-terms / B(h), as in diffusers.
    """
    if rk is None:
        return 0.0, 0.5
    b_h = math.expm1(hh)
    phi = b_h / hh - 1  # h_phi_k for k = 1
    b1 = phi / b_h
    phi = phi / hh - 0.5  # k = 2 (factorial 2)
    b2 = phi * 2 / b_h
    rho_d = (b1 - b2) / (1 - rk)
    return rho_d, b1 - rho_d
