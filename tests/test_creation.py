"""Making tensors as PyTorch does: shapes given either way, dtypes, randint's two readings,
randperm and multinomial's draws, devices as objects, generators of one's own."""

import numpy as np
import pytest

import tinylm


@pytest.mark.parametrize("make", ["zeros", "ones", "empty", "randn", "rand"])
def test_a_shape_is_given_as_ints_or_as_one_tuple(make):
    function = getattr(tinylm, make)
    assert function(2, 3).shape == function((2, 3)).shape == function([2, 3]).shape == (2, 3)
    assert function().shape == function(()).shape == ()
    with pytest.raises(TypeError, match=make):
        function(2.5)
    with pytest.raises(ValueError, match="negative"):
        function(2, -1)


@pytest.mark.parity
def test_creation_dtypes_and_values_match_torch(torch):
    pairs = [
        (tinylm.full((2, 3), 1.5), torch.full((2, 3), 1.5)),
        (tinylm.full((2,), 7), torch.full((2,), 7)),
        (tinylm.full((2,), True), torch.full((2,), True)),
        (tinylm.full((2,), 2.0, dtype=tinylm.float64), torch.full((2,), 2.0, dtype=torch.float64)),
        (tinylm.empty(2, 3), torch.zeros(2, 3)),  # empty's values: zeros here, unset in PyTorch
        (tinylm.eye(3), torch.eye(3)),
        (tinylm.eye(2, 4), torch.eye(2, 4)),
        (tinylm.eye(3, dtype=tinylm.int64), torch.eye(3, dtype=torch.int64)),
        (tinylm.linspace(-1, 2, 7), torch.linspace(-1, 2, 7)),
        (tinylm.linspace(0, 1, 5, dtype=tinylm.float64), torch.linspace(0, 1, 5, dtype=torch.float64)),
        (tinylm.linspace(3, 3, 1), torch.linspace(3, 3, 1)),
        (tinylm.linspace(0, 1, 0), torch.linspace(0, 1, 0)),
        (tinylm.full_like(tinylm.zeros(2, dtype=tinylm.int64), 4),
         torch.full_like(torch.zeros(2, dtype=torch.int64), 4)),
    ]  # fmt: skip
    for ours, theirs in pairs:
        assert ours.dtype == theirs.numpy().dtype, (ours, theirs)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parity
def test_randint_reads_its_arguments_as_torch_does(torch):
    # (args, kwargs, the range [low, high) they mean)
    calls = [((10, (3,)), {}, (0, 10)), ((5, 9, (2, 4)), {}, (5, 9)), ((10,), {"size": (5,)}, (0, 10)),
             ((), {"high": 4, "size": (6,)}, (0, 4)), ((), {"low": 2, "high": 4, "size": (6,)}, (2, 4)),
             ((3, 10), {"size": (2,)}, (3, 10)), ((0, 11, (3, 8)), {}, (0, 11))]  # fmt: skip
    for args, kwargs, (low, high) in calls:
        ours, theirs = tinylm.randint(*args, **kwargs), torch.randint(*args, **kwargs)
        assert ours.shape == tuple(theirs.shape) and ours.dtype == np.int64 == theirs.numpy().dtype
        for drawn in (ours.numpy(), theirs.numpy()):
            assert low <= drawn.min() and drawn.max() < high, (args, kwargs)
    assert tinylm.randint(3, (2,), dtype=tinylm.int32).dtype == np.int32


def test_randint_refuses_a_missing_size_and_an_empty_range():
    with pytest.raises(TypeError, match="size"):
        tinylm.randint(5, 3)  # PyTorch refuses it too: size must be a tuple
    with pytest.raises(TypeError, match="size"):
        tinylm.randint(5)
    with pytest.raises(ValueError, match="low must be less than high"):
        tinylm.randint(5, 5, (2,))


def test_randint_draws_every_value_of_its_range():
    tinylm.manual_seed(0)
    drawn = tinylm.randint(2, 7, (2000,)).numpy()
    assert set(drawn.tolist()) == {2, 3, 4, 5, 6}


def test_randperm_is_a_permutation_reproducible_by_seed():
    tinylm.manual_seed(4)
    first = tinylm.randperm(50)
    tinylm.manual_seed(4)
    assert first.dtype == np.int64 and sorted(first.tolist()) == list(range(50))
    assert first.tolist() == tinylm.randperm(50).tolist() != list(range(50))
    assert tinylm.randperm(0).shape == (0,)
    with pytest.raises(ValueError, match="randperm"):
        tinylm.randperm(-1)


def test_a_generator_of_ones_own_leaves_the_shared_one_alone():
    tinylm.manual_seed(1)
    expected = tinylm.randn(4).numpy()
    tinylm.manual_seed(1)
    generator = tinylm.Generator().manual_seed(7)
    mine = tinylm.randn(4, generator=generator).numpy()
    assert np.array_equal(tinylm.randn(4).numpy(), expected)  # the shared generator did not move
    assert np.array_equal(tinylm.randn(4, generator=tinylm.Generator().manual_seed(7)).numpy(), mine)
    assert generator.initial_seed() == 7 and tinylm.Generator().initial_seed() == 67280421310721
    state = generator.get_state()
    after = tinylm.randperm(9, generator=generator).tolist()
    assert tinylm.randperm(9, generator=generator.set_state(state)).tolist() == after
    with pytest.raises(TypeError, match="Generator"):
        tinylm.randn(2, generator=np.random.default_rng(0))


def test_multinomial_without_replacement_draws_distinct_indices_weighted():
    tinylm.manual_seed(0)
    weights = tinylm.tensor([[0.0, 1.0, 3.0, 6.0], [5.0, 0.0, 0.0, 5.0]])
    drawn = tinylm.multinomial(weights, 2)
    assert drawn.shape == (2, 2) and drawn.dtype == np.int64 and not drawn.requires_grad
    assert sorted(drawn.numpy()[1].tolist()) == [0, 3]  # the only two of non-zero weight
    firsts = np.array([tinylm.multinomial(weights[0], 1).item() for _ in range(4000)])
    np.testing.assert_allclose(np.bincount(firsts, minlength=4) / 4000, [0, 0.1, 0.3, 0.6], atol=0.03)
    # the second draw, given the first was 3 (weight 6): 1 and 2 in the ratio 1:3
    pairs = tinylm.multinomial(tinylm.tensor([[0.0, 1.0, 3.0, 6.0]] * 4000), 2).numpy()
    seconds = pairs[pairs[:, 0] == 3, 1]
    np.testing.assert_allclose(np.mean(seconds == 2), 0.75, atol=0.04)
    # once the weighted categories are drawn, the zero-weighted ones follow (as PyTorch)
    assert sorted(tinylm.multinomial(tinylm.tensor([0.0, 2.0, 0.0]), 3).tolist()) == [0, 1, 2]


def test_multinomial_with_replacement_follows_the_weights():
    tinylm.manual_seed(2)
    drawn = tinylm.tensor([1.0, 0.0, 3.0]).multinomial(8000, replacement=True).numpy()
    assert drawn.shape == (8000,)
    np.testing.assert_allclose(np.bincount(drawn, minlength=3) / 8000, [0.25, 0, 0.75], atol=0.02)


@pytest.mark.parity
def test_multinomial_refuses_what_torch_refuses(torch):
    cases = [([0.0, 0.0], 1, False), ([1.0, -1.0], 1, False), ([1.0, float("nan")], 1, False),
             ([1.0, 2.0], 3, False), ([[[1.0]]], 1, False), ([1.0, 2.0], 0, True)]  # fmt: skip
    for weights, count, replacement in cases:
        with pytest.raises(RuntimeError):
            torch.multinomial(torch.tensor(weights), count, replacement)
        with pytest.raises(ValueError, match="multinomial"):
            tinylm.multinomial(tinylm.tensor(weights), count, replacement)
    with pytest.raises(TypeError, match="floating"):
        tinylm.multinomial(tinylm.tensor([1, 2]), 1)


def test_device_objects_go_where_device_strings_go():
    cpu = tinylm.device("cpu")
    assert cpu == "cpu" and str(cpu) == "cpu" and cpu.type == "cpu" and cpu.index is None
    assert repr(tinylm.device("cuda", 0)) == "device(type='cuda', index=0)" == repr(tinylm.device("cuda:0"))
    assert tinylm.device("cuda:0").type == "cuda" and tinylm.device(tinylm.device("cpu")) == "cpu"
    x = tinylm.zeros(2, device=cpu)
    assert x.device == "cpu" and x.device.type == "cpu" and isinstance(x.device, tinylm.device)
    assert x.to(cpu) is x and tinylm.tensor([1.0], device=cpu).device == cpu
    assert tinylm.nn.Linear(2, 2).to(cpu).weight.device == "cpu"
    for bad in ("gpu", "cuda:x", "cpu:"):
        with pytest.raises(ValueError, match="device"):
            tinylm.device(bad)


def test_as_tensor_shares_an_array_of_the_right_dtype():
    array = np.arange(3.0)
    shared = tinylm.as_tensor(array)
    array[0] = 5.0
    assert shared.numpy()[0] == 5.0 and shared.dtype == np.float64
    assert tinylm.as_tensor(array, dtype=tinylm.float32).dtype == np.float32
    assert tinylm.as_tensor(shared) is shared and tinylm.is_tensor(shared) and not tinylm.is_tensor(array)
    assert tinylm.as_tensor([1, 2]).dtype == np.int64


def test_cuda_answers_without_a_gpu_as_torch_does():
    from tinylm import backend

    available = backend.cuda_is_available()
    assert tinylm.cuda.is_available() is available
    assert tinylm.cuda.device_count() == (1 if available else 0)
    tinylm.cuda.synchronize()
    tinylm.cuda.empty_cache()
    tinylm.cuda.manual_seed_all(3)
    if not available:
        with pytest.raises(RuntimeError, match="cuda"):
            tinylm.cuda.current_device()
