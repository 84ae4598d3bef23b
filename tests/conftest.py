import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
warnings.filterwarnings("ignore", message=".*Sparse invariant checks are implicitly disabled.*")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _default_dtype_unchanged():
    """A test that changes torch's global default dtype must restore it (else later tests
    build float64 layers and fail far from the cause)."""
    import torch

    before = torch.get_default_dtype()
    yield
    after = torch.get_default_dtype()
    torch.set_default_dtype(before)
    assert after == before, f"test changed torch's default dtype to {after}"


@pytest.fixture(scope="module")
def single_thread():
    """Run a module on one torch/BLAS/OpenMP thread (small transforms are fastest so, and
    stable on a shared machine); restores the thread count afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
    else:
        with threadpool_limits(1):
            yield
    torch.set_num_threads(n)
