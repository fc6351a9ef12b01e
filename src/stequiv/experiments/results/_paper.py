"""The paper's published numbers (arXiv 2405.05171, Tables 3–5), as fractions, for comparison."""

from __future__ import annotations

from typing import Any

__all__ = ["PAPER"]


def _net(train_acc: float, train_loss: float, val_acc: float, val_loss: float | None) -> dict[str, float | None]:
    return {"train_acc": train_acc, "train_loss": train_loss, "val_acc": val_acc, "val_loss": val_loss}


#: The paper's Tables 3–5 (arXiv 2405.05171), as fractions. ``table4[model][optimizer][experiment]``
#: holds Ē and quantized-weight agreement; ``table5[model][optimizer]["ste"|"qhat"]`` the nets' final
#: metrics; ``table3`` the descriptions and interpretations. ``None``: cut off in the extracted text.
PAPER: dict[str, Any] = {
    "table3": {
        "baseline": ("Q̂ vs. STE", "Baseline."),
        "lr-tweak": ("Q̂ vs. Q̂ with 1% learning rate increase",
                     "Replacing STE-net with Q̂-net is about as impactful as a small change to η (A)."),
        "unadjusted": ("Q̂ vs. STE without reinitializing weights",
                       "The two models only see the same weight movement if weights are re-initialized according to M (B)."),
    },
    "table4": {
        "mnist": {
            "sgd": {"baseline": {"ebar": 0.00515, "agreement": 0.9831},
                    "lr-tweak": {"ebar": 0.00572, "agreement": 0.9866},
                    "unadjusted": {"ebar": 0.0252, "agreement": 0.9653}},
            "adam": {"baseline": {"ebar": 0.0281, "agreement": 0.9442},
                     "lr-tweak": {"ebar": 0.0174, "agreement": 0.954}},
        },
        "imagenet": {
            "sgd": {"baseline": {"ebar": 0.0542, "agreement": 0.6894},
                    "lr-tweak": {"ebar": 0.0546, "agreement": 0.7564},
                    "unadjusted": {"ebar": 0.0788, "agreement": 0.6753}},
            "adam": {"baseline": {"ebar": 0.0718, "agreement": 0.7222},
                     "lr-tweak": {"ebar": 0.0499, "agreement": 0.7632}},
        },
    },
    "table5": {
        "mnist": {
            "sgd": {"ste": _net(0.9705, 0.1439, 0.9708, 0.1417), "qhat": _net(0.9698, 0.1483, 0.9714, 0.1468)},
            "adam": {"ste": _net(0.9756, 0.1270, 0.9766, 0.1257), "qhat": _net(0.9763, 0.1254, 0.9758, 0.1245)},
        },
        "imagenet": {
            "sgd": {"ste": _net(0.6894, 1.3370, 0.6983, None), "qhat": _net(0.6851, 1.3365, 0.6877, None)},
            "adam": {"ste": _net(0.6978, 1.2876, 0.7001, None), "qhat": _net(0.6902, 1.3153, 0.6937, None)},
        },
    },
}
