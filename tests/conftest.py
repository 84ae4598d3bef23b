import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
warnings.filterwarnings("ignore", message=".*Sparse invariant checks are implicitly disabled.*")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
