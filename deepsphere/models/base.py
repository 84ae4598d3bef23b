"""The part every model shares: a stored recipe (``config``) that rebuilds it."""
from __future__ import annotations

import copy
from typing import Optional

from torch import nn

from ..sampling import Sampling
from ._common import sampling_from_recipe


class SphereModel(nn.Module):
    """Base class of the models: ``self.config`` is a JSON-serialisable dict (the sampling's
    recipe, the graph recipe, channels, ...) that :meth:`from_config` turns back into an
    identical architecture, so a checkpoint is ``{"config": model.config,
    "state_dict": model.state_dict()}``; Laplacians are rebuilt, not stored."""

    config: dict

    def _store_config(self, sampling: Sampling, **kwargs) -> None:
        self.sampling = sampling
        self.config = {"name": type(self).__name__, "sampling": sampling.recipe(),
                       **copy.deepcopy(kwargs)}

    @classmethod
    def from_config(cls, config: dict, sampling: Optional[Sampling] = None) -> "SphereModel":
        """Rebuild a model from its ``config``. Partial-sky HEALPix and irregular samplings
        are not fully described by their recipe: pass them as ``sampling`` (checked)."""
        config = copy.deepcopy(dict(config))
        name = config.pop("name", cls.__name__)
        if name != cls.__name__:
            raise ValueError(f"config is for {name}, not {cls.__name__}")
        s = sampling_from_recipe(config.pop("sampling"), sampling)
        return cls(s, **config)
