"""Hand-edited and damaged checkpoints: each is refused with a CheckpointError that names the file,
the field or tensor, what it holds and what was expected; never a traceback, never silent damage.

A real checkpoint (a 1-layer GPT trained for 2 steps) is made once; each test edits a copy of it.
"Well-formed file, bad content" edits re-write the weights file's size and SHA-256 in ckpt.json, so
that only the content is wrong.
"""

import copy
import hashlib
import json
import os
import re
import shutil

import numpy as np
import pytest

import tinylm
from tinylm import random
from tinylm.errors import CheckpointError
from tinylm.training import checkpoint
from tinylm.training.config import make_config
from tinylm.training.inference import load_for_inference
from tinylm.training.trainer import Trainer

TEXT = "".join(f"{w} " for w in "to be or not to be that is the question whether tis nobler".split()) * 60


def _settings(corpus, out, **overrides):
    settings = dict(data=str(corpus), out=str(out), n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=4,
                    max_iters=2, eval_interval=2, eval_iters=1, warmup_iters=1, log_interval=1, seed=3)  # fmt: skip
    settings.update(overrides)
    return make_config(("test", settings))


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A real checkpoint, made once: the directory a 2-step training run wrote."""
    root = tmp_path_factory.mktemp("original")
    (root / "corpus.txt").write_text(TEXT)
    Trainer(_settings(root / "corpus.txt", root / "run"), progress=False).run()
    return root


@pytest.fixture
def corpus(original):
    """The text the checkpoint was trained on (a resumed run reads it again)."""
    return original / "corpus.txt"


@pytest.fixture
def ckpt(original, tmp_path):
    """A copy of the real checkpoint, for one test to damage."""
    shutil.copytree(original / "run", tmp_path / "run")
    return tmp_path / "run"


def _record(directory):
    return json.loads((directory / checkpoint.RECORD).read_text())


def _edit_record(directory, edit):
    """Apply ``edit`` (a function changing a dict in place) to ckpt.json."""
    record = _record(directory)
    edit(record)
    (directory / checkpoint.RECORD).write_text(json.dumps(record))


def _write_weights(directory, payload, name=None):
    """Write ``payload`` as the weights file (or ``name``) and record its true size and SHA-256."""
    record = _record(directory)
    name = name or record["weights"]["file"]
    (directory / name).write_bytes(payload)
    record["weights"].update(file=name, bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    (directory / checkpoint.RECORD).write_text(json.dumps(record))


def _edit_tensors(directory, edit):
    """Apply ``edit`` to the weights file's tensors (a dict of writable arrays) and write them back as a
    well-formed safetensors file, its size and SHA-256 recorded."""
    from safetensors.numpy import load, save

    weights = directory / _record(directory)["weights"]["file"]
    arrays = {name: value.copy() for name, value in load(weights.read_bytes()).items()}
    edit(arrays)
    _write_weights(directory, save(arrays))


def _set(path, value):
    """An edit that sets the field at ``path`` (keys from the record's top) to ``value``."""

    def edit(record):
        *parents, last = path
        for key in parents:
            record = record[key]
        record[last] = value

    return edit


def _delete(path):
    def edit(record):
        *parents, last = path
        for key in parents:
            record = record[key]
        del record[last]

    return edit


# (edit of ckpt.json, fragments the error must hold: the field, what it holds, what was expected)
RECORD_CASES = {
    "weights missing": (_delete(["weights"]), ["weights is missing", "expected an object"]),
    "weights not an object": (_set(["weights"], "ckpt.safetensors"), ["weights is \"ckpt.safetensors\"", "an object"]),
    "weights.file missing": (_delete(["weights", "file"]), ["weights.file is missing", "plain file name"]),
    "weights.file a number": (_set(["weights", "file"], 7), ["weights.file is 7", "plain file name"]),
    "weights.bytes missing": (_delete(["weights", "bytes"]), ["weights.bytes is missing", "non-negative integer"]),
    "weights.bytes a string": (_set(["weights", "bytes"], "44760"), ["weights.bytes is \"44760\"", "integer"]),
    "weights.bytes negative": (_set(["weights", "bytes"], -1), ["weights.bytes is -1", "non-negative integer"]),
    "weights.sha256 missing": (_delete(["weights", "sha256"]), ["weights.sha256 is missing", "hexadecimal"]),
    "weights.sha256 a number": (_set(["weights", "sha256"], 12), ["weights.sha256 is 12", "64 lowercase hex"]),
    "weights.sha256 short": (_set(["weights", "sha256"], "abc"), ["weights.sha256 is \"abc\"", "64 lowercase"]),
    "step missing": (_delete(["step"]), ["step is missing", "non-negative integer"]),
    "step a string": (_set(["step"], "2"), ["step is \"2\"", "non-negative integer"]),
    "step a fraction": (_set(["step"], 2.5), ["step is 2.5", "non-negative integer"]),
    "step negative": (_set(["step"], -2), ["step is -2", "non-negative integer"]),
    "evaluated missing": (_delete(["evaluated"]), ["evaluated is missing", "true or false"]),
    "evaluated a number": (_set(["evaluated"], 1), ["evaluated is 1", "true or false"]),
    "best_val_loss missing": (_delete(["best_val_loss"]), ["best_val_loss is missing", "non-negative number"]),
    "best_val_loss a string": (_set(["best_val_loss"], "low"), ["best_val_loss is \"low\"", "number"]),
    "best_val_loss NaN": (_set(["best_val_loss"], float("nan")), ["best_val_loss is NaN", "non-negative number"]),
    "best_val_loss negative": (_set(["best_val_loss"], -1.5), ["best_val_loss is -1.5", "non-negative number"]),
    "rng_state missing": (_delete(["rng_state"]), ["rng_state is missing", "generator's state"]),
    "rng_state a string": (_set(["rng_state"], "PCG64"), ["rng_state is \"PCG64\"", "generator's state"]),
    "rng_state calls numpy": (_set(["rng_state", "bit_generator"], "seed"), ["rng_state", "'seed'", "PCG64"]),
    "rng_state out of range": (_set(["rng_state", "state", "state"], -5), ["rng_state", "OverflowError"]),
    "rng_state a float": (_set(["rng_state", "state", "inc"], 1.5), ["rng_state", "wrong type or out of range"]),
    "rng_state lacks a key": (_delete(["rng_state", "state", "inc"]), ["rng_state", "'inc'"]),
    "model missing": (_delete(["model"]), ["model is missing", "the model's settings"]),
    "model a list": (_set(["model"], [16, 2]), ["model is [16, 2]", "an object"]),
    "n_head does not divide n_embd": (_set(["model", "n_head"], 3),
                                      ["model section", "n_head (3)", "divide n_embd (16)"]),
    "n_head missing": (_delete(["model", "n_head"]), ["model section", "n_head missing"]),
    "n_head zero": (_set(["model", "n_head"], 0), ["model section", "n_head", "positive integer, got 0"]),
    "vocab_size zero": (_set(["model", "vocab_size"], 0), ["model section", "vocab_size", "positive integer, got 0"]),
    "n_embd negative": (_set(["model", "n_embd"], -16), ["model section", "n_embd", "positive integer, got -16"]),
    "n_layer a string": (_set(["model", "n_layer"], "1"), ["model section", "n_layer", "positive integer, got '1'"]),
    "dropout 1.5": (_set(["model", "dropout"], 1.5), ["model section", "dropout", "[0, 1), got 1.5"]),
    "model of no known type": (_set(["model", "type"], "transformer"), ["model section", "gpt, rnn", "'transformer'"]),
    "model with an unknown key": (_set(["model", "heads"], 2), ["model section", "unknown key(s) 'heads'"]),
    "tokenizer missing": (_delete(["tokenizer"]), ["tokenizer is missing", "'type'"]),
    "tokenizer a string": (_set(["tokenizer"], "char"), ["tokenizer is \"char\"", "string 'type'"]),
    "optimizer missing": (_delete(["optimizer"]), ["optimizer is missing", "the optimizer's state"]),
    "param_groups missing": (_delete(["optimizer", "param_groups"]), ["optimizer.param_groups is missing", "list"]),
    "param_groups empty": (_set(["optimizer", "param_groups"], []), ["optimizer.param_groups is []", "non-empty"]),
    "lr a string": (_set(["optimizer", "param_groups", 0, "lr"], "fast"),
                    ["optimizer.param_groups[0].lr is \"fast\"", "non-negative finite number"]),
    "lr negative": (_set(["optimizer", "param_groups", 1, "lr"], -0.1),
                    ["optimizer.param_groups[1].lr is -0.1", "non-negative finite number"]),
    "lr infinite": (_set(["optimizer", "param_groups", 0, "lr"], float("inf")),
                    ["optimizer.param_groups[0].lr is Infinity", "finite"]),
    "betas one number": (_set(["optimizer", "param_groups", 0, "betas"], [0.9]),
                         ["optimizer.param_groups[0].betas is [0.9]", "two numbers in [0, 1)"]),
    "beta2 of 1.5": (_set(["optimizer", "param_groups", 0, "betas"], [0.9, 1.5]),
                     ["optimizer.param_groups[0].betas is [0.9, 1.5]", "two numbers in [0, 1)"]),
    "weight_decay null": (_set(["optimizer", "param_groups", 0, "weight_decay"], None),
                          ["optimizer.param_groups[0].weight_decay is null", "finite number"]),
    "eps a list": (_set(["optimizer", "param_groups", 1, "eps"], [1e-8]),
                   ["optimizer.param_groups[1].eps is [1e-08]", "finite number"]),
    "params missing": (_delete(["optimizer", "param_groups", 0, "params"]),
                       ["optimizer.param_groups[0].params is missing", "parameter indices"]),
    "params of strings": (_set(["optimizer", "param_groups", 0, "params"], ["0", "1"]),
                          ["optimizer.param_groups[0].params is [\"0\", \"1\"]", "parameter indices"]),
    "a parameter in two groups": (_set(["optimizer", "param_groups", 1, "params"], [5, 6, 7]),
                                  ["optimizer.param_groups[1].params lists parameter 5 a second time"]),
    "scalars missing": (_delete(["optimizer", "scalars"]), ["optimizer.scalars is missing", "an object"]),
    "Adam's step a string": (_set(["optimizer", "scalars", "3", "step"], "2"),
                             ["optimizer.scalars.3.step is \"2\"", "an integer from 1"]),
    "Adam's step zero": (_set(["optimizer", "scalars", "0", "step"], 0),
                         ["optimizer.scalars.0.step is 0", "an integer from 1"]),
    "a scalar that is not a number": (_set(["optimizer", "scalars", "0", "lr"], {"x": 1}),
                                      ["optimizer.scalars.0.lr is {\"x\": 1}", "finite number"]),
    "numbers for a parameter that is in no group": (
        _set(["optimizer", "scalars", "99"], {"step": 2}),
        ["optimizer.scalars has an entry \"99\"", "param_groups lists (0-8)"],
    ),
}


@pytest.mark.parametrize("case", sorted(RECORD_CASES))
def test_a_damaged_record_names_the_file_the_field_and_what_was_expected(ckpt, case):
    edit, fragments = RECORD_CASES[case]
    _edit_record(ckpt, edit)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load_checkpoint(ckpt)
    message = str(caught.value)
    assert str(ckpt / "ckpt.json") in message, message
    for fragment in fragments:
        assert fragment in message, message


RESUME_CASES = ["step missing", "best_val_loss NaN", "rng_state a float", "evaluated missing", "optimizer missing",
                "Adam's step zero", "n_head does not divide n_embd"]


@pytest.mark.parametrize("case", RESUME_CASES)
def test_resuming_from_a_damaged_record_is_a_checkpoint_error(ckpt, corpus, case):
    edit, fragments = RECORD_CASES[case]
    _edit_record(ckpt, edit)
    with pytest.raises(CheckpointError, match=re.escape(fragments[0])):
        Trainer(_settings(corpus, ckpt, max_iters=4, resume=True), progress=False)


def test_the_optimizer_section_is_not_needed_for_sampling(ckpt):
    straight, _, _ = load_for_inference(ckpt)
    _edit_record(ckpt, _set(["optimizer", "param_groups"], "damaged"))
    _edit_tensors(ckpt, lambda arrays: arrays["optimizer.0.exp_avg"].fill(np.nan))
    with pytest.raises(CheckpointError, match="optimizer.param_groups"):
        checkpoint.load_checkpoint(ckpt)
    record, model_state, optimizer_state = checkpoint.load_checkpoint(ckpt, optimizer=False)
    assert optimizer_state is None and record["step"] == 2 and "transformer.wte.weight" in model_state
    _edit_record(ckpt, _delete(["optimizer"]))

    def drop_the_optimizer(arrays):
        for name in [name for name in arrays if name.startswith("optimizer.")]:
            del arrays[name]

    _edit_tensors(ckpt, drop_the_optimizer)
    model, tokenizer, record = load_for_inference(ckpt)
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[name].numpy(), value.numpy(), err_msg=name)
    out = model.generate(tinylm.tensor([tokenizer.encode("to be")]), max_new_tokens=5)
    assert out.shape == (1, len("to be") + 5)


def test_an_int32_embedding_is_refused_not_loaded_as_zeros(ckpt):
    # Why it loaded as zeros: GPT's weights are all below 1 in size, so a tensor converted
    # to int32 holds only zeros, and loading cast it back to float without a word.
    converted = {}

    def to_int32(arrays):
        converted["wte"] = arrays["model.transformer.wte.weight"].astype(np.int32)
        arrays["model.transformer.wte.weight"] = converted["wte"]

    _edit_tensors(ckpt, to_int32)
    assert not converted["wte"].any()
    with pytest.raises(CheckpointError) as caught:
        load_for_inference(ckpt)
    message = str(caught.value)
    assert "'model.transformer.wte.weight' has dtype I32" in message and "floating dtype" in message, message
    assert _record(ckpt)["weights"]["file"] in message


def test_a_float16_tensor_is_widened_exactly(ckpt):
    def to_float16(arrays):
        arrays["model.transformer.wpe.weight"] = arrays["model.transformer.wpe.weight"].astype(np.float16)

    _edit_tensors(ckpt, to_float16)
    _, model_state, _ = checkpoint.load_checkpoint(ckpt)
    assert model_state["transformer.wpe.weight"].dtype == np.float16
    model, _, _ = load_for_inference(ckpt)
    np.testing.assert_array_equal(model.state_dict()["transformer.wpe.weight"].numpy(),
                                  model_state["transformer.wpe.weight"].astype(np.float32))  # fmt: skip


@pytest.mark.parametrize("tensor", ["model.lm_head.weight", "model.transformer.ln_f.weight", "optimizer.2.exp_avg_sq"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused_naming_the_tensor_and_the_count(ckpt, tensor, bad):
    def spoil(arrays):
        arrays[tensor].reshape(-1)[[0, 2, 3]] = bad

    _edit_tensors(ckpt, spoil)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load_checkpoint(ckpt)
    message = str(caught.value)
    assert f"{tensor!r} holds 3 non-finite values" in message and _record(ckpt)["weights"]["file"] in message
    if tensor.startswith("optimizer."):  # inference does not read the optimizer's state
        load_for_inference(ckpt)
    else:
        with pytest.raises(CheckpointError, match="non-finite"):
            load_for_inference(ckpt)


def test_a_tensor_of_neither_the_model_nor_the_optimizer_is_refused(ckpt):
    _edit_tensors(ckpt, lambda arrays: arrays.update(junk=np.zeros(2, np.float32)))
    with pytest.raises(CheckpointError, match="holds a tensor 'junk', expected only 'model.<parameter>'"):
        checkpoint.load_checkpoint(ckpt, optimizer=False)


def test_an_optimizer_moment_of_a_parameter_that_does_not_exist_is_refused(ckpt):
    _edit_tensors(ckpt, lambda arrays: arrays.update({"optimizer.9.exp_avg": arrays["optimizer.8.exp_avg"]}))
    with pytest.raises(CheckpointError, match=r"tensor 'optimizer.9.exp_avg' is not the state of a parameter .*0-8"):
        checkpoint.load_checkpoint(ckpt)
    checkpoint.load_checkpoint(ckpt, optimizer=False)


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (lambda arrays: arrays.pop("optimizer.3.exp_avg_sq"), ["state of parameter 3 lacks ['exp_avg_sq']"]),
        (lambda arrays: arrays.update({"optimizer.3.exp_avg": arrays["optimizer.3.exp_avg"][:1]}),
         ["'exp_avg' of parameter 3 has shape", "the parameter"]),
        (lambda arrays: arrays.update({"optimizer.0.exp_avg_sq": -arrays["optimizer.0.exp_avg_sq"] - 1}),
         ["'exp_avg_sq' of parameter 0 holds negative values"]),
        (lambda arrays: arrays.update({"optimizer.1.velocity": arrays["optimizer.1.exp_avg"]}),
         ["parameter 1 holds ['velocity']", "does not keep"]),
    ],
    ids=["missing exp_avg_sq", "wrong shape", "negative exp_avg_sq", "unknown moment"],
)
def test_resuming_with_optimizer_state_that_does_not_fit_is_a_checkpoint_error(ckpt, corpus, edit, fragments):
    _edit_tensors(ckpt, edit)
    with pytest.raises(CheckpointError) as caught:
        Trainer(_settings(corpus, ckpt, max_iters=4, resume=True), progress=False)
    message = str(caught.value)
    assert str(ckpt) in message and all(fragment in message for fragment in fragments), message


def test_resume_still_continues_from_a_good_checkpoint(ckpt, corpus):
    # the checks refuse damage only: a whole checkpoint resumes, its optimizer state restored
    trainer = Trainer(_settings(corpus, ckpt, max_iters=4, resume=True), progress=False)
    assert trainer.step == 2 and all(state["step"] == 2 for state in trainer.optimizer.state.values())
    assert trainer.optimizer.param_groups[0]["betas"] == (0.9, 0.99)
    assert trainer.run().step == 4


@pytest.mark.parametrize("where", ["parent", "absolute", "nested"])
def test_a_weights_file_outside_the_checkpoint_directory_is_not_read(ckpt, where):
    weights = ckpt / _record(ckpt)["weights"]["file"]
    outside = ckpt.parent / "elsewhere.safetensors"
    shutil.copy(weights, outside)  # a valid file, with the recorded size and SHA-256: it must still not be read
    name = {"parent": "../elsewhere.safetensors", "absolute": str(outside), "nested": "sub/x.safetensors"}[where]
    if where == "nested":
        (ckpt / "sub").mkdir()
        shutil.copy(weights, ckpt / "sub" / "x.safetensors")
    _edit_record(ckpt, _set(["weights", "file"], name))
    with pytest.raises(CheckpointError) as caught:
        load_for_inference(ckpt)
    message = str(caught.value)
    assert f"weights.file is {json.dumps(name)}" in message and "plain file name" in message, message


def test_a_weights_file_that_links_out_of_the_directory_is_not_read(ckpt):
    weights = ckpt / _record(ckpt)["weights"]["file"]
    outside = ckpt.parent / "elsewhere.safetensors"
    shutil.move(weights, outside)
    os.symlink(outside, weights)
    with pytest.raises(CheckpointError, match="is a symbolic link, expected a plain file"):
        load_for_inference(ckpt)


def test_a_checkpoint_directory_reached_through_a_link_still_loads(ckpt, tmp_path):
    # the weights file must not be a link; the directory may be (a "latest" link to a run)
    os.symlink(ckpt, tmp_path / "latest")
    record, _, _ = checkpoint.load_checkpoint(tmp_path / "latest")
    assert record["step"] == 2


def test_set_rng_state_refuses_a_malformed_state_and_keeps_the_generator():
    tinylm.manual_seed(7)
    saved = random.get_rng_state()
    expected = random.generator().random(3)
    bad = copy.deepcopy(saved)
    bad["state"]["state"] = 2**200
    for state in ({"bit_generator": "seed"}, {"bit_generator": "default_rng"}, {"bit_generator": "BitGenerator"},
                  "PCG64", bad, dict(saved, extra=1)):
        random.set_rng_state(saved)
        with pytest.raises(ValueError, match="set_rng_state"):
            random.set_rng_state(state)
        np.testing.assert_array_equal(random.generator().random(3), expected)
    random.set_rng_state(json.loads(json.dumps(saved)))  # a state that went through JSON is whole
    np.testing.assert_array_equal(random.generator().random(3), expected)
