"""Binary estimators that drop to zero with a jump at a clip: Xu–Cheung long-tailed, ReSTE, FDA.

All take the latent weight itself (``units = "weight"``, boundary point 0); none is Lipschitz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .._estimator import Estimator, param, register_estimator
from .._validate import at_least, integer_at_least, positive_float
from ._common import odd


@register_estimator("long_tailed")
@dataclass(frozen=True)
class LongTailed(Estimator):
    r"""Long-tailed higher-order estimator (Xu & Cheung 2019, as used by Dynamic Sparse Training).

    .. math:: \hat Q'(w) = 2 - 4|w|\ (|w| \le 0.4), \quad 0.4\ (0.4 < |w| \le 1), \quad 0\ (|w| > 1)

    continuous at 0.4 and jumping to 0 at ±1; ∫Q̂′ = 1.44 (the surrogate saturates at ±0.72).
    Closed form :math:`\int_0^w ds/\hat Q' = \operatorname{sign}(w)\big(-\tfrac14\ln(1-2\min(|w|,
    0.4)) + \max(|w|-0.4, 0)/0.4\big)`, finite on [-1, 1].

    Reference: Xu & Cheung, "Accurate and compact convolutional neural networks with trained
    binarization", BMVC 2019, arXiv:1909.11366 (attribution via Liu et al., "Dynamic sparse
    training", ICLR 2020, ``BinaryStep.backward``; not checked against the BMVC text).
    """

    title = "Long-tailed"
    reference = "Xu & Cheung 2019, arXiv:1909.11366 (via DST, Liu et al. 2020)"
    kind = "binary"
    units = "weight"
    lipschitz = False
    support = (-1.0, 1.0)
    kinks = (-1.0, -0.4, 0.0, 0.4, 1.0)

    def derivative(self, x: Any) -> Any:
        xp = array_namespace(x)
        a = xp.abs(x)
        tail = xp.where(a <= 1.0, 0.4 * xp.ones_like(x), xp.zeros_like(x))
        return xp.where(a <= 0.4, 2.0 - 4.0 * a, tail)

    def surrogate(self, x: Any) -> Any:
        xp = array_namespace(x)
        a = xp.clip(xp.abs(x), 0.0, 1.0)
        return xp.sign(x) * xp.where(a <= 0.4, 2.0 * a - 2.0 * a * a, 0.48 + 0.4 * (a - 0.4))

    def weight_primitive(self, w: Any) -> Any:
        xp = array_namespace(w)
        return odd(w, lambda a: -0.25 * xp.log1p(-2.0 * xp.clip(a, 0.0, 0.4))
                   + xp.clip(a - 0.4, 0.0, None) / 0.4)


@register_estimator("reste")
@dataclass(frozen=True)
class ReSTE(Estimator):
    r"""Rectified STE (Wu et al. 2023): :math:`\hat Q(w) = \operatorname{sign}(w)|w|^{1/o}`.

    .. math:: \hat Q'(w) = \tfrac1o|w|^{(1-o)/o}\ (\text{interval} < |w| \le t), \quad
              \text{interval}^{(1-o)/o}\ (|w| \le \text{interval}), \quad 0\ (|w| > t)

    the chord slope near 0 avoiding the singularity. Jumps (factor o) at ±interval and to 0 at ±t.
    Closed form, with :math:`p = (2o-1)/o`: :math:`\int_0^w ds/\hat Q' = \operatorname{sign}(w)
    \big(\min(|w|, i)\, i^{(o-1)/o} + \tfrac{o^2}{2o-1}(\max(|w|, i)^p - i^p)\big)`.

    Args:
        o: the power, >= 1 (module value 1 at the start; annealed to ``o_end = 3`` by a cosine schedule).
        t: clip (1.5).
        interval: width of the chord near 0 (0.1).

    Reference: Wu, Zheng, Liu & Zheng, "Estimator meets equilibrium perspective: a rectified
    straight through estimator for binary neural networks training", ICCV 2023, arXiv:2308.06689;
    code DravenALG/ReSTE ``Binary_ReSTE``.
    """

    o: float = param(1.0, at_least(1.0, " (o = 1 is the clipped STE)"))
    t: float = param(1.5, positive_float)
    interval: float = param(0.1, positive_float)
    title = "ReSTE"
    reference = "Wu et al. 2023 (ReSTE), arXiv:2308.06689"
    kind = "binary"
    units = "weight"
    lipschitz = False

    def check_params(self) -> None:
        if not self.interval < self.t:
            raise ValueError(f"`interval` must be < `t`, got interval={self.interval}, t={self.t}")

    @property
    def support(self) -> tuple[float, float]:
        return (-self.t, self.t)

    @property
    def kinks(self) -> tuple[float, ...]:
        return (-self.t, -self.interval, self.interval, self.t)

    def derivative(self, x: Any) -> Any:
        xp = array_namespace(x)
        a, i, o = xp.abs(x), self.interval, self.o
        power = xp.pow(xp.clip(a, i, None), (1.0 - o) / o) / o  # clip: no 0 ** negative
        inner = xp.where(a <= i, i ** ((1.0 - o) / o) * xp.ones_like(x), power)
        return xp.where(a <= self.t, inner, xp.zeros_like(x))

    def surrogate(self, x: Any) -> Any:
        xp = array_namespace(x)
        a, i, o = xp.clip(xp.abs(x), 0.0, self.t), self.interval, self.o
        root = xp.pow(xp.clip(a, i, None), 1.0 / o)
        return xp.sign(x) * xp.where(a <= i, a * i ** ((1.0 - o) / o), root)

    def weight_primitive(self, w: Any) -> Any:
        xp = array_namespace(w)
        i, o = self.interval, self.o
        p = (2.0 * o - 1.0) / o

        def half(a: Any) -> Any:
            outer = xp.pow(xp.clip(a, i, None), p) - i**p
            return xp.clip(a, None, i) * i ** ((o - 1.0) / o) + o * o / (2.0 * o - 1.0) * outer

        return odd(w, half)


@register_estimator("fda")
@dataclass(frozen=True)
class FDA(Estimator):
    r"""Frequency-domain approximation of sign (Xu et al. 2021): a truncated sine series.

    .. math:: \hat Q(w) = \frac4\pi\sum_{i=0}^{n}\frac{\sin((2i+1)\omega w)}{2i+1}, \qquad
              \hat Q'(w) = \frac{4\omega}{\pi}\sum_{i=0}^{n}\cos((2i+1)\omega w)
              = \frac{2\omega}{\pi}\frac{\sin(2(n+1)\omega w)}{\sin \omega w}

    for |w| ≤ 1, zero beyond (a jump). Positive on (-1, 1) iff :math:`2(n+1)\omega \le \pi`
    (n = 9 at ω = 0.1 is; late in training, n = 18, it turns negative beyond 0.827).
    No closed form for ∫1/Q̂′ (numeric). The noise-adaptation module is not part of Q̂′.

    Args:
        omega: base frequency ω (0.1).
        n: index of the last term (the schedule n = 9 + ⌊9·epoch/epochs⌋ starts at 9).

    Reference: Xu et al., "Learning frequency domain approximation for binary neural networks",
    NeurIPS 2021, arXiv:2103.00841 (from a secondary PyTorch port; official code is MindSpore).
    """

    omega: float = param(0.1, positive_float)
    n: int = param(9, integer_at_least(0))
    title = "FDA"
    reference = "Xu et al. 2021 (FDA), arXiv:2103.00841"
    kind = "binary"
    units = "weight"
    lipschitz = False
    support = (-1.0, 1.0)
    kinks = (-1.0, 1.0)

    @property
    def positive(self) -> bool:
        return 2 * (self.n + 1) * self.omega <= math.pi

    def _series(self, x: Any, term: Any) -> Any:
        xp = array_namespace(x)
        out = xp.zeros_like(x)
        for i in range(self.n + 1):
            out = out + term(2 * i + 1, xp.clip(x, -1.0, 1.0))
        return out

    def derivative(self, x: Any) -> Any:
        """By the closed form (two sines instead of n + 1 cosines) where ``sin ωw`` vanishes only
        at w = 0 on [-1, 1] (ω < π), with its limit 2(n+1) there; else term by term."""
        xp = array_namespace(x)
        if self.omega < math.pi:
            theta = self.omega * xp.clip(x, -1.0, 1.0)
            den = xp.sin(theta)
            zero = den == 0.0
            ratio = xp.sin((2.0 * (self.n + 1)) * theta) / xp.where(zero, xp.ones_like(den), den)
            s = 0.5 * xp.where(zero, xp.full_like(den, 2.0 * (self.n + 1)), ratio)
        else:
            s = self._series(x, lambda m, c: xp.cos(m * self.omega * c))
        return xp.where(xp.abs(x) <= 1.0, (4.0 * self.omega / math.pi) * s, xp.zeros_like(x))

    def surrogate(self, x: Any) -> Any:
        xp = array_namespace(x)
        return (4.0 / math.pi) * self._series(x, lambda m, c: xp.sin(m * self.omega * c) / m)
