"""Internal building blocks of :mod:`stequiv.models`, for stequiv's own tests.

Not the user-facing API (that is :mod:`stequiv.models`): these names may change without notice.

* :class:`CausalSelfAttention` — the transformers' attention block.
* :class:`GlobalAvgPool` — the ResNets' pooling before the classifier.
"""

from ._resnet import GlobalAvgPool as GlobalAvgPool
from ._transformer import CausalSelfAttention as CausalSelfAttention

__all__ = ["CausalSelfAttention", "GlobalAvgPool"]
