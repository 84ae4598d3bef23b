"""What every dataset shares: three named splits, and class counts for labelled data."""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")


class SplitDataset:
    """A dataset made of the splits ``train``, ``val`` and ``test``, each a
    ``torch.utils.data.Dataset`` stored in ``self._splits`` by the subclass."""

    _splits: dict

    def split(self, name: str) -> Dataset:
        if name not in self._splits:
            raise ValueError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
        return self._splits[name]


class LabelledDataset(SplitDataset):
    """Splits whose items carry integer labels (``labels`` array on each split, one per map
    or one per pixel) and ``self.n_classes``."""

    n_classes: int

    def class_counts(self) -> np.ndarray:
        """Label counts in the training split (for ``class_weights: balanced``)."""
        return np.bincount(np.asarray(self._splits["train"].labels).ravel(), minlength=self.n_classes)
