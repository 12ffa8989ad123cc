"""Tutorial idioms that once stopped a PyTorch program under ``import tinylm as torch`` (issue 17):
each works as in PyTorch (checked against it where it computes something) or is refused by name."""

import warnings

import numpy as np
import pytest

import tinylm
from tinylm import nn

torch = pytest.importorskip("torch")


# ----- 1. f"{loss:.3f}" --------------------------------------------------------


@pytest.mark.parametrize("value, dtype", [(0.123456, "float32"), (-2.5, "float64"), (7, "int64"), (True, "bool")])
@pytest.mark.parametrize("spec", ["", ".3f", "8.2e", "^10"])
def test_a_0d_tensor_formats_as_its_number_as_in_pytorch(value, dtype, spec):
    if dtype in ("int64", "bool") and spec in (".3f", "8.2e"):
        spec = ">6"  # a float spec on an int is fine too, but bool formats differently through float
    ours = tinylm.tensor(value, dtype=getattr(tinylm, dtype))
    theirs = torch.tensor(value, dtype=getattr(torch, dtype))
    assert format(ours, spec) == format(theirs, spec)
    assert f"{ours:{spec}}" == format(theirs.item(), spec)


def test_a_one_element_tensor_of_any_shape_formats_as_its_number():
    # PyTorch refuses a spec for shape (1,) or (1, 1); tinylm formats it (docs/pytorch.md, "What differs")
    assert f"{tinylm.tensor([[0.25]]):.3f}" == "0.250"
    assert f"{tinylm.tensor([3]):d}" == "3"


def test_a_tensor_of_several_elements_refuses_a_format_spec_as_pytorch_does():
    with pytest.raises(TypeError):
        format(torch.tensor([1.0, 2.0]), ".3f")
    with pytest.raises(TypeError, match="unsupported format string passed to Tensor.__format__"):
        format(tinylm.tensor([1.0, 2.0]), ".3f")
    x = tinylm.tensor([1.0, 2.0])
    assert f"{x}" == repr(x) == str(x)


# ----- 2. detach_, uniform_, normal_ ----------------------------------------------


def test_detach_in_place_cuts_the_tensor_from_the_graph_as_pytorch():
    for lib in (tinylm, torch):
        x = lib.ones(3, requires_grad=True)
        y = x * 2
        assert y.detach_() is y
        assert not y.requires_grad and y.grad_fn is None and y.is_leaf
        assert y.tolist() == [2.0, 2.0, 2.0]
        with pytest.raises(RuntimeError):
            y.sum().backward()


@pytest.mark.parametrize("dtype", [tinylm.float32, tinylm.float64])
def test_uniform_and_normal_fill_in_place_from_the_seeded_generator(dtype):
    x = tinylm.zeros(200, 100, dtype=dtype)
    version = x._version
    tinylm.manual_seed(5)
    assert x.uniform_(-2, 3) is x
    assert x.dtype == dtype and x._version > version
    assert -2 <= float(x.min()) and float(x.max()) < 3 and abs(float(x.mean()) - 0.5) < 0.05
    first = x.numpy().copy()
    tinylm.manual_seed(5)
    assert np.array_equal(tinylm.zeros(200, 100, dtype=dtype).uniform_(-2, 3).numpy(), first)
    x.normal_(mean=1.5, std=0.5)
    assert abs(float(x.mean()) - 1.5) < 0.02 and abs(float(x.std()) - 0.5) < 0.02
    assert np.array_equal(tinylm.ones(4).uniform_().numpy() < 1, np.ones(4, dtype=bool))


def test_uniform_and_normal_take_a_generator_of_their_own():
    draws = [tinylm.zeros(5).normal_(generator=tinylm.Generator().manual_seed(3)).tolist() for _ in range(2)]
    assert draws[0] == draws[1]
    a = tinylm.zeros(5).uniform_(generator=tinylm.Generator().manual_seed(3))
    assert a.tolist() != tinylm.zeros(5).uniform_(generator=tinylm.Generator().manual_seed(4)).tolist()


def test_random_fills_follow_the_in_place_rules():
    leaf = tinylm.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="uniform_: a leaf Variable that requires grad"):
        leaf.uniform_()
    with pytest.raises(RuntimeError, match="normal_: in-place operations on a tensor inside the autograd graph"):
        (leaf * 2).normal_()
    with tinylm.no_grad():
        leaf.uniform_(1, 2)
    assert float(leaf.min()) >= 1 and leaf.requires_grad
    with pytest.raises(RuntimeError, match="uniform_: expected a floating-point tensor, got int64"):
        tinylm.zeros(3, dtype=tinylm.int64).uniform_()
    with pytest.raises(RuntimeError, match="normal_: expects std >= 0.0"):
        tinylm.zeros(3).normal_(0, -1)


def test_a_tensor_saved_for_backward_and_then_refilled_stops_backward():
    x = tinylm.ones(3, requires_grad=True)
    w = tinylm.ones(3)
    y = (x * w).sum()
    w.uniform_()
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_data_stays_an_array_as_documented():
    x = tinylm.zeros(3)
    assert isinstance(x.data, np.ndarray) and not hasattr(x.data, "uniform_")


# ----- 3. to(non_blocking=..., copy=...) -------------------------------------------


def test_to_accepts_non_blocking_and_copy_as_pytorch():
    x = tinylm.ones(3, requires_grad=True)
    assert x.to("cpu", non_blocking=True) is x
    assert x.to(tinylm.device("cpu"), tinylm.float32, non_blocking=True) is x
    assert x.to("cpu", non_blocking=True, dtype=tinylm.float64).dtype == tinylm.float64
    copied = x.to("cpu", copy=True)
    assert copied is not x and not np.shares_memory(copied.data, x.data) and copied.tolist() == x.tolist()
    (copied * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0, 3.0]
    t = torch.ones(3)
    assert t.to("cpu", non_blocking=True) is t and t.to("cpu", copy=True) is not t


# ----- 4. float ops on integer and bool tensors ------------------------------------

_UNARY = ["exp", "log", "sin", "cos", "tanh", "sigmoid", "sqrt", "erf"]


@pytest.mark.parametrize("op", _UNARY)
@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_float_ops_on_integer_and_bool_tensors_give_float32_as_pytorch(op, dtype):
    values = [True, False, True] if dtype == "bool" else [0, 1, 2, 7, 30]
    ours = getattr(tinylm, op)(tinylm.tensor(values, dtype=getattr(tinylm, dtype)))
    theirs = getattr(torch, op)(torch.tensor(values, dtype=getattr(torch, dtype)))
    assert theirs.dtype == torch.float32 and ours.dtype == tinylm.float32
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
    method = getattr(tinylm.tensor(values, dtype=getattr(tinylm, dtype)), op)()
    assert method.dtype == tinylm.float32 and method.tolist() == ours.tolist()


# ----- 5. no NumPy warnings where PyTorch gives inf or nan silently ----------------


@pytest.mark.parametrize(
    "function",
    [
        lambda lib, x: lib.log(x),
        lambda lib, x: lib.sqrt(x),
        lambda lib, x: 1 / x,
        lambda lib, x: x / lib.zeros_like(x),
        lambda lib, x: x**-1.0,
        lambda lib, x: x**0.5,
        lambda lib, x: lib.exp(x * 100),
        lambda lib, x: lib.pow(x + 1, x),
    ],
    ids=["log", "sqrt", "rdiv", "div0", "pow-1", "pow.5", "exp", "pow"],
)
def test_poles_and_domain_errors_give_inf_and_nan_silently_as_pytorch(function):
    values = [0.0, -1.0, 2.0, 1e3]
    x = tinylm.tensor(values, requires_grad=True)
    t = torch.tensor(values, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = function(tinylm, x)
        ours.sum().backward()
    theirs = function(torch, t)
    theirs.sum().backward()
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-5)


def test_log_of_a_causal_mask_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mask = tinylm.log(tinylm.tril(tinylm.ones(4, 4)))
    assert np.array_equal(mask.numpy(), torch.log(torch.tril(torch.ones(4, 4))).numpy())


# ----- 6. clip_grad_value_ -----------------------------------------------------------


def _twin_linears():
    ours, theirs = nn.Linear(4, 3), torch.nn.Linear(4, 3)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32) * 3
    (ours(tinylm.tensor(x)) ** 2).sum().backward()
    (theirs(torch.tensor(x)) ** 2).sum().backward()
    return ours, theirs


@pytest.mark.parametrize("clip_value", [0.5, 3])
def test_clip_grad_value_clamps_each_gradient_as_pytorch(clip_value):
    ours, theirs = _twin_linears()
    before = ours.weight.grad.numpy().copy()
    held = ours.weight.grad.data
    assert nn.utils.clip_grad_value_(ours.parameters(), clip_value) is None
    torch.nn.utils.clip_grad_value_(theirs.parameters(), clip_value)
    assert np.abs(before).max() > clip_value  # something was clipped
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), dict(theirs.named_parameters())[name].grad.numpy(), rtol=1e-5)
    assert np.array_equal(held, before)  # a holder of the old gradient array keeps its values
    nn.utils.clip_grad_value_(ours.weight, 0.1)  # one tensor, as in PyTorch
    assert np.abs(ours.weight.grad.numpy()).max() <= np.float32(0.1)


# ----- 7. Embedding.from_pretrained, max_norm ----------------------------------------


def test_from_pretrained_shares_the_table_and_freezes_it_by_default():
    table = tinylm.randn(5, 3)
    frozen = nn.Embedding.from_pretrained(table)
    assert not frozen.weight.requires_grad and np.shares_memory(frozen.weight.data, table.data)
    assert frozen(tinylm.tensor([4, 0])).tolist() == [table[4].tolist(), table[0].tolist()]
    assert not frozen(tinylm.tensor([1])).requires_grad
    trained = nn.Embedding.from_pretrained(table, freeze=False, padding_idx=1)
    assert trained.weight.requires_grad and trained.padding_idx == 1
    assert trained.weight[1].tolist() == table[1].tolist()  # not zeroed, as in PyTorch
    trained(tinylm.tensor([1, 2, 2])).sum().backward()
    assert trained.weight.grad[1].tolist() == [0.0] * 3 and trained.weight.grad[2].tolist() == [2.0] * 3
    with pytest.raises(ValueError, match="must be 2-d"):
        nn.Embedding.from_pretrained(tinylm.ones(3))


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_max_norm_renormalises_the_rows_looked_up_as_pytorch(norm_type):
    table = np.random.default_rng(2).normal(size=(7, 4)).astype(np.float32) * 2
    ids = np.array([[0, 3, 3], [6, 1, 0]])
    ours = nn.Embedding.from_pretrained(tinylm.tensor(table.copy()), freeze=False, max_norm=1.5, norm_type=norm_type)
    theirs = torch.nn.Embedding.from_pretrained(torch.tensor(table.copy()), freeze=False, max_norm=1.5,
                                                norm_type=norm_type)
    out, expected = ours(tinylm.tensor(ids)), theirs(torch.tensor(ids))
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours.weight.detach().numpy(), theirs.weight.detach().numpy(), rtol=1e-6)
    assert np.array_equal(ours.weight.numpy()[2], table[2])  # rows not looked up are left alone
    (out**2).sum().backward()
    (expected**2).sum().backward()
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-5)


def test_max_norm_in_the_constructor_and_refused_options():
    tinylm.manual_seed(0)
    layer = nn.Embedding(10, 6, max_norm=0.5)
    before = layer.weight.numpy().copy()
    assert np.linalg.norm(before, axis=1).min() > 0.5
    layer(tinylm.tensor([2, 5]))
    norms = np.linalg.norm(layer.weight.numpy(), axis=1)
    assert np.allclose(norms[[2, 5]], 0.5, rtol=1e-5)
    assert np.array_equal(np.delete(layer.weight.numpy(), [2, 5], axis=0), np.delete(before, [2, 5], axis=0))
    for option in ("sparse", "scale_grad_by_freq"):
        with pytest.raises(tinylm.NotInTinylmError, match=rf"torch.nn.Embedding\({option}=True\) is not in tinylm"):
            nn.Embedding(10, 6, **{option: True})


# ----- 8. Transformer keywords that only choose a fast path ---------------------------


def test_transformer_encoder_accepts_its_fast_path_keywords():
    tinylm.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    fast = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False, mask_check=False)
    plain = nn.TransformerEncoder(layer, 2)
    plain.load_state_dict(fast.state_dict())
    x = tinylm.randn(2, 5, 8)
    assert np.allclose(fast(x).detach().numpy(), plain(x).detach().numpy())


# ----- 9. nn refusals -----------------------------------------------------------------


@pytest.mark.parametrize(
    "owner, name",
    [(nn, "DataParallel"), (nn, "DistributedDataParallel"), (nn, "SyncBatchNorm"), (nn, "parallel"),
     (nn.utils, "prune"), (nn.utils, "weight_norm"), (nn.utils, "spectral_norm")],
)
def test_nn_refuses_what_tinylm_lacks_by_name(owner, name):
    prefix = owner.__name__.replace("tinylm", "torch")
    with pytest.raises(tinylm.NotInTinylmError, match=rf"^{prefix}\.{name} is not in tinylm: \w"):
        getattr(owner, name)
    assert not hasattr(owner, name)


def test_not_in_tinylm_error_lives_in_errors_and_is_reexported():
    from tinylm.errors import NotInTinylmError, refuse

    assert tinylm.NotInTinylmError is NotInTinylmError and tinylm.refuse is refuse
    assert issubclass(NotInTinylmError, AttributeError) and issubclass(NotInTinylmError, NotImplementedError)
