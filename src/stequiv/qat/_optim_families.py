r"""The registry of optimizer families and, per family, why its twin is what it is.

Notation of :mod:`._optim_rules`: per coordinate :math:`q = \hat Q'(w) > 0`, Q̂-net gradient
:math:`qg`, twin gradient :math:`g`; s = 1/q (SGD twins: :math:`M'/\alpha`, the same thing).

**SGD** (momentum μ, dampening d, Nesterov): :math:`b \leftarrow \mu b + (1-d)qg`,
:math:`\Delta w = -\eta(qg + \mu b)` (Nesterov) or :math:`-\eta b`. Everything is linear in the
gradient, so through M, :math:`\Delta M = M'\Delta w = -\alpha\eta\,(b/q)`: the twin on M(w) with
α·η and :math:`\tilde b = b/q` takes this step, up to :math:`\tfrac12 M''\Delta w^2`: *second
order*. Coupled decay adds λw to qg: through M the twin would need :math:`\lambda M^{-1}(\tilde w)/q`
instead of :math:`\lambda\tilde w`, a difference of O(η) per step: *first order*, refused.

**Adam family** (Adam, AdamW, NAdam, RAdam, Adamax, AMSGrad; RMSprop, Adagrad): updates
:math:`m/(\sqrt v + \varepsilon)` with m linear and v quadratic in the gradient (Adamax: v ↦
max(β₂v, |g|+ε), AMSGrad: running max of v, Adagrad: v a sum; all homogeneous of degree 2 in q
for a fixed q>0). With :math:`\tilde m = m/q`, :math:`\tilde v = v/q^2` the twin on w itself sees
:math:`qm̃/(q\sqrt{\tilde v} + \varepsilon) = \tilde m/(\sqrt{\tilde v} + \varepsilon/q)`: it
would need :math:`\tilde\varepsilon = \varepsilon/q` per coordinate. With the same ε its step
differs by the relative amount :math:`\varepsilon\,|1/q - 1|/(\sqrt{\hat v} + \varepsilon)`: exact
as ε → 0, a first-order drift of that relative size otherwise (1e-8 against √v̂ ~ 1e-3: 1e-5;
ε = 1e-3: order one). AdamW and the ``decoupled_weight_decay=True`` variants of NAdam and RAdam
decay by :math:`w \leftarrow (1-\eta\lambda)w`, on equal weights in both nets: exact; coupled decay
enters the gradient and is refused as for SGD. RAdam's first steps (ρ_t ≤ 5) are not normalised
(:math:`\Delta w = -\eta\hat m`, an SGD-momentum step proportional to q): refused until they are
past. RMSprop's momentum accumulates normalised steps (invariant); its centred ``grad_avg`` is
linear. Adagrad's ``initial_accumulator_value`` sits in the state from construction and is mapped.

**Lion**: :math:`\Delta w = -\eta\,\mathrm{sign}(\beta_1 m + (1-\beta_1)qg)` with m the EMA (β₂)
of past qg. With :math:`\tilde m = m/q` the argument is q times the twin's, and q > 0 keeps its
sign: the next step is *exact*. Along a run m holds gradients taken at earlier weights, where
q differed by O(η): only the factor being constant across steps keeps the sign, so a coordinate
whose argument lies within O(η) of 0 can flip (a full ±η difference, with probability O(η)):
O(η²) per step in expectation. Decay is multiplicative on equal weights: exact.

**Schedule-free AdamW**: the gradient at :math:`y` is normalised coordinatewise
(:math:`g/\sqrt{v}`), z and x are linear in the normalised steps: the Adam argument applies,
:math:`\tilde v = v/q^2`, z copied. **Schedule-free SGD** steps z by the raw gradient and keeps
y = (1−β)z + βx: the twin would need M(y) = (1−β)M(z) + βM(x), false for a curved M by
:math:`\tfrac12\beta(1-\beta)M''(z-x)^2`; z − x is the distance travelled (≈ η·t), so at equal
weight movement this error does not fall with η (and the gradient, taken at y, is mapped by
M′(z) ≠ M′(y)): *fails*, no twin is built.

**Muon**: :math:`\Delta w = -\eta\,\mathrm{orth}(b)` with :math:`\mathrm{orth}(G) = UV^\top` (SVD
:math:`G = U\Sigma V^\top`, Newton–Schulz). orth(cG) = orth(G) for a scalar c > 0, but
:math:`q \odot G` with q varying over the matrix has another polar factor: the nearest twin (w,
η, :math:`\tilde b = b/q`) differs by O(1) relative, *first order*, growing with the spread of q.
Its decay is decoupled (exact); the false refusal "coupled decay" does not apply.

**Adafactor**: the second moment of a matrix is factored, :math:`\hat V = RC/1^\top R` with R, C
row and column means of :math:`G^2`. For :math:`q \odot G`, :math:`R_i = \mathrm{mean}_j q_{ij}^2
g_{ij}^2` is not :math:`q_{ij}^2` times anything unless q is rank one (:math:`q_{ij} = a_ib_j`):
not coordinatewise, *first order*. Its update clip (RMS ≤ d) and relative step (RMS of w) act on
equal weights. **Shampoo / SOAP**: :math:`L^{-1/4} G R^{-1/4}` with :math:`L = \sum GG^\top`,
:math:`R = \sum G^\top G` is invariant to a scalar, not to :math:`q\odot G`: *first order*.
The nearest twin of these keeps w and η (they are invariant to a global factor).
"""

from __future__ import annotations

import torch

from ._optim_rules import OptimizerRule

__all__ = ["BY_CLASS", "RULES"]

FIRST = "first order"
ADAM_STATE = {"step": None, "exp_avg": 1, "exp_avg_sq": 2, "max_exp_avg_sq": 2, "exp_inf": 1,
              "mu_product": None}


def _coupled_decay(opt: torch.optim.Optimizer, i: int, group: dict) -> str | None:
    wd = group.get("weight_decay", 0)
    if not wd or group.get("decoupled_weight_decay", False):
        return None
    return (f"param group {i} applies weight_decay={wd} to quantized weights under "
            f"{type(opt).__name__}: coupled decay λw enters the gradient and is not mapped by M "
            "(the twin would need λ·M⁻¹(w̃)/Q̂′), so the twins would diverge at first order. Put "
            "quantized weights in a group with weight_decay=0, or decay decoupled (AdamW, "
            "decoupled_weight_decay=True: exact). Measured (SGD momentum, λ = 0.01): Ē ∝ η^1.01 at "
            "small η, Ē per unit of weight movement ≈ 0.12 (docs/optimizers.md).")


def radam_unrectified_steps(beta2: float) -> int:
    """The number of first steps t with ρ_t ≤ 5, where RAdam takes unnormalised momentum steps."""
    rho_inf = 2 / (1 - beta2) - 1
    t = 1
    while rho_inf - 2 * t * beta2**t / (1 - beta2**t) <= 5:
        t += 1
    return t - 1


def _radam_warmup(opt: torch.optim.Optimizer, i: int, group: dict) -> str | None:
    n = radam_unrectified_steps(group["betas"][1])
    done = max((int(opt.state[p]["step"]) for p in group["params"] if "step" in opt.state[p]),
               default=0)
    if done >= n:
        return None
    return (f"param group {i}: RAdam's first {n} steps (β₂={group['betas'][1]}, ρ_t ≤ 5) are "
            f"unnormalised momentum steps Δw = −η·m̂, proportional to Q̂′ (first order); this "
            f"optimizer has taken {done}. Convert after step {n} (measured from step 0: Ē ∝ "
            "η^1.21 at small η, docs/optimizers.md).")


def _rule(family: str, classes: tuple[str, ...], keys: set[str], kind: str, rule: str,
          verdict: str, state: dict, **kw) -> OptimizerRule:
    return OptimizerRule(family, classes, frozenset(keys | {"lr"}), kind, rule, verdict, state, **kw)


ADAM_TWIN = "w and η unchanged, m/Q̂′, v/Q̂′²"
RULES: tuple[OptimizerRule, ...] = (
    _rule("SGD", ("torch.optim.sgd.SGD",), {"momentum", "dampening", "nesterov"}, "sgd",
          "M(w), α·η, momentum/Q̂′", "second order", {"momentum_buffer": 1},
          checks=(_coupled_decay,)),
    _rule("Adam", ("torch.optim.adam.Adam", "torch.optim.adamw.AdamW"), {"betas", "eps", "amsgrad"},
          "adam", ADAM_TWIN, "exact", ADAM_STATE, checks=(_coupled_decay,)),
    _rule("Adam", ("torch.optim.nadam.NAdam",), {"betas", "eps", "momentum_decay"}, "adam",
          ADAM_TWIN, "exact", ADAM_STATE, checks=(_coupled_decay,)),
    _rule("Adam", ("torch.optim.radam.RAdam",), {"betas", "eps"}, "adam", ADAM_TWIN, "exact",
          ADAM_STATE, checks=(_coupled_decay, _radam_warmup)),
    _rule("Adam", ("torch.optim.adamax.Adamax",), {"betas", "eps"}, "adam", ADAM_TWIN, "exact",
          ADAM_STATE, checks=(_coupled_decay,)),
    _rule("RMSprop", ("torch.optim.rmsprop.RMSprop",), {"alpha", "eps", "centered"}, "adam",
          "w and η unchanged, v/Q̂′², grad_avg/Q̂′", "exact",
          {"step": None, "square_avg": 2, "grad_avg": 1, "momentum_buffer": None},
          checks=(_coupled_decay,)),
    _rule("Adagrad", ("torch.optim.adagrad.Adagrad",), {"lr_decay", "eps"}, "adam",
          "w and η unchanged, sum/Q̂′²", "exact", {"step": None, "sum": 2},
          checks=(_coupled_decay,)),
    _rule("Lion", ("lion_pytorch.lion_pytorch.Lion",), {"betas", "weight_decay"}, "adam",
          "w and η unchanged, m/Q̂′", "exact", {"exp_avg": 1},
          init_attrs={"decoupled_weight_decay": "decoupled_wd"}),
    _rule("schedule-free AdamW", ("schedulefree.adamw_schedulefree.AdamWScheduleFree",),
          {"betas", "eps", "weight_sum", "lr_max"}, "adam", "w, z and η unchanged, v/Q̂′²",
          "exact", {"z": None, "exp_avg_sq": 2}),
    _rule("schedule-free SGD", ("schedulefree.sgd_schedulefree.SGDScheduleFree",),
          {"momentum", "weight_sum", "lr_max"}, "", "none", "fails", {},
          reason="it evaluates the gradient at y = (1−β)z + βx, and M(y) ≠ (1−β)M(z) + βM(x) "
          "for a curved M by ½β(1−β)M″(z−x)², which grows with the distance z − x travelled, "
          "not with η (at equal weight movement it does not fall as η does); no twin is built"),
    _rule("Muon", ("torch.optim.Muon", "torch.optim._muon.Muon"), {"momentum", "weight_decay"}, "adam",
          "w and η unchanged, momentum/Q̂′", FIRST, {"momentum_buffer": 1},
          measured="Ē ∝ η^1.00 over 100× in η, Ē per unit of weight movement ≈ 1.0 at every η (docs/optimizers.md)",
          reason="its update orth(b) = UVᵀ is invariant to a scalar factor but not to the "
          "per-coordinate factor Q̂′ (not coordinatewise); its decoupled decay is exact"),
    _rule("Adafactor", ("torch.optim.Adafactor", "torch.optim._adafactor.Adafactor"), {"beta2_decay", "eps", "d"}, "adam",
          "w and η unchanged, row/col factors copied", FIRST,
          {"step": None, "row_var": None, "col_var": None, "variance": 2},
          measured="Ē ∝ η^1.01 over 100× in η, Ē per unit of weight movement ≈ 0.37 at every η (docs/optimizers.md)",
          reason="its factored second moment RC/1ᵀR mixes Q̂′² across rows and columns (not "
          "coordinatewise; exact only if Q̂′ is rank one)"),
    _rule("Shampoo/SOAP", ("pytorch_optimizer.optimizer.shampoo.Shampoo",
                           "pytorch_optimizer.optimizer.soap.SOAP", "heavyball.SOAP"),
          set(), "adam", "w and η unchanged", FIRST, {"step": None},
          measured="Ē ∝ η^1.00 over 100× in η, Ē per unit of weight movement ≈ 1.2 (Shampoo and SOAP) at every η (docs/optimizers.md)",
          reason="its matrix preconditioner L^(-1/4) G R^(-1/4) is invariant to a scalar factor "
          "but not to the per-coordinate factor Q̂′ (not coordinatewise)"),
)
BY_CLASS: dict[str, OptimizerRule] = {c: r for r in RULES for c in r.classes}
assert len(BY_CLASS) == sum(len(r.classes) for r in RULES), "a class in two families"
