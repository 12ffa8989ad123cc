"""tinylm.save / tinylm.load: round trips of tensors, arrays and nested structures in one
safetensors file, PyTorch's pickles and damaged files refused with a one-line message."""

import io

import numpy as np
import pytest

import tinylm
from tinylm.serialization import SerializationError

DTYPES = [np.float32, np.float64, np.int64, np.int32, np.bool_, np.float16, np.uint8]


def _same(loaded, saved):
    """Equal values of the same types, all the way down (tensors: dtype, shape, values, requires_grad)."""
    assert type(loaded) is type(saved), (loaded, saved)
    if isinstance(saved, tinylm.Tensor):
        assert loaded.dtype == saved.dtype and loaded.shape == saved.shape
        assert loaded.requires_grad == saved.requires_grad and loaded.device == saved.device
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy())
    elif isinstance(saved, (np.ndarray, np.generic)):
        assert loaded.dtype == saved.dtype and np.shape(loaded) == np.shape(saved)
        np.testing.assert_array_equal(loaded, saved)
    elif isinstance(saved, dict):
        assert list(loaded) == list(saved)
        for key in saved:
            _same(loaded[key], saved[key])
    elif isinstance(saved, (list, tuple)):
        assert len(loaded) == len(saved)
        for a, b in zip(loaded, saved):
            _same(a, b)
    elif isinstance(saved, float) and np.isnan(saved):
        assert np.isnan(loaded)
    else:
        assert loaded == saved


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3, 4)])
def test_a_tensor_round_trips_with_its_dtype_and_shape(dtype, shape):
    values = np.random.default_rng(0).standard_normal(shape) * 5
    saved = tinylm.tensor(values.astype(dtype))
    tinylm.save(saved, "t.pt")
    _same(tinylm.load("t.pt"), saved)


def test_nested_structures_round_trip():
    saved = {
        "model": tinylm.nn.Linear(3, 2).state_dict(),
        "optimizer": {"state": {0: {"step": 3, "exp_avg": np.ones((2, 3))}}, "param_groups": [{"lr": 1e-3,
                      "betas": (0.9, 0.999), "params": [0, 1], "amsgrad": False}]},  # fmt: skip
        "numbers": [1, -2.5, float("inf"), float("nan"), True, None, 2**70, "text", ""],
        "numpy numbers": (np.float32(1.5), np.int64(7), np.bool_(True)),
        "keys": {1: "int", 2.5: "float", None: "none", False: "bool", "a.b": tinylm.tensor([1.0])},
        "leaf": tinylm.ones(2, requires_grad=True),
        "same name twice": {"a": {"b": tinylm.zeros(1)}, "a.b": tinylm.ones(1)},
        "empty": [[], {}, ()],
    }
    tinylm.save(saved, "nested.pt")
    _same(tinylm.load("nested.pt"), saved)


def test_a_state_dict_is_one_safetensors_file_under_its_own_names():
    from safetensors.numpy import load_file

    model = tinylm.nn.Linear(4, 3)
    tinylm.save(model.state_dict(), "m.pt")
    arrays = load_file("m.pt")
    assert sorted(arrays) == ["bias", "weight"]
    np.testing.assert_array_equal(arrays["weight"], model.weight.numpy())
    other = tinylm.nn.Linear(4, 3)
    other.load_state_dict(tinylm.load("m.pt"))
    np.testing.assert_array_equal(other.weight.numpy(), model.weight.numpy())


def test_a_plain_safetensors_file_loads_as_a_dict_of_tensors():
    from safetensors.numpy import save_file

    save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(3, dtype=np.int64)}, "plain.st")
    loaded = tinylm.load("plain.st")
    assert sorted(loaded) == ["n", "w"] and isinstance(loaded["w"], tinylm.Tensor)
    assert loaded["w"].shape == (2, 3) and loaded["n"].dtype == np.int64 and loaded["n"].item() == 3


def test_file_objects_map_location_and_atomic_writes(tmp_path):
    buffer = io.BytesIO()
    tinylm.save({"x": tinylm.arange(3)}, buffer)
    buffer.seek(0)
    loaded = tinylm.load(buffer, map_location=tinylm.device("cpu"), weights_only=True)
    assert loaded["x"].tolist() == [0, 1, 2]
    buffer.seek(0)
    assert tinylm.load(buffer, map_location={"cuda": "cpu"})["x"].device == "cpu"
    tinylm.save([1, 2], tmp_path / "list.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.pt"]  # no temporary file left beside it
    with pytest.raises(SerializationError, match="map_location as a function"):
        tinylm.load(tmp_path / "list.pt", map_location=lambda storage, location: storage)


def test_values_that_are_not_data_are_refused_naming_their_place():
    with pytest.raises(SerializationError, match=r"obj\['a'\]\[1\] is a set"):
        tinylm.save({"a": [1, {2}]}, "bad.pt")
    with pytest.raises(SerializationError, match="key of type tuple"):
        tinylm.save({(1, 2): 3}, "bad.pt")
    with pytest.raises(SerializationError, match="dtype <U1"):
        tinylm.save(np.array(["a"]), "bad.pt")
    with pytest.raises(SerializationError, match="Linear"):
        tinylm.save(tinylm.nn.Linear(2, 2), "bad.pt")


@pytest.mark.parity
def test_a_pytorch_file_is_refused_saying_how_to_convert_it(torch, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(SerializationError) as refused:
        tinylm.load(path)
    message = str(refused.value)
    assert "\n" not in message and "PyTorch pickle" in message and "safetensors.torch.save_file" in message
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(SerializationError, match="pickle"):
        tinylm.load(legacy)


def test_truncated_and_foreign_files_are_refused():
    tinylm.save({"w": tinylm.randn(10, 10)}, "whole.pt")
    payload = open("whole.pt", "rb").read()
    for cut in (len(payload) - 7, 100, 9, 3, 0):
        open("cut.pt", "wb").write(payload[:cut])
        with pytest.raises(SerializationError, match="truncated|not a tinylm.save"):
            tinylm.load("cut.pt")
    open("text.pt", "w").write("just some text, not a tensor file at all")
    with pytest.raises(SerializationError, match="not a tinylm.save or safetensors file"):
        tinylm.load("text.pt")
    with pytest.raises(SerializationError, match="cannot read"):
        tinylm.load("missing.pt")
