"""In-place ops: their results, where they are allowed, and the version counter that stops a
changed saved value from giving a wrong gradient (compared with PyTorch, which raises there too)."""

import numpy as np
import pytest

import tinylm


def test_each_inplace_op_writes_its_result_and_returns_the_tensor():
    x = tinylm.zeros(2, 3)
    assert x.fill_(2.0) is x and x.tolist() == [[2.0] * 3] * 2
    assert x.add_(tinylm.tensor([1.0, 2.0, 3.0])) is x and x.tolist() == [[3.0, 4.0, 5.0]] * 2
    x.add_(1.0, alpha=2.0)
    assert x.tolist() == [[5.0, 6.0, 7.0]] * 2
    x.sub_(tinylm.ones(3), alpha=0.5)
    assert x.tolist() == [[4.5, 5.5, 6.5]] * 2
    x.mul_(2).div_(tinylm.tensor([[1.0], [2.0]]))
    assert x.tolist() == [[9.0, 11.0, 13.0], [4.5, 5.5, 6.5]]
    x.clamp_(5.0, 10.0)
    assert x.tolist() == [[9.0, 10.0, 10.0], [5.0, 5.5, 6.5]]
    x.masked_fill_(tinylm.tensor([True, False, True]), -1.0)
    assert x.tolist() == [[-1.0, 10.0, -1.0], [-1.0, 5.5, -1.0]]
    x.copy_(tinylm.tensor([1, 2, 3]))  # broadcast and cast, as PyTorch's copy_
    assert x.dtype == np.float32 and x.tolist() == [[1.0, 2.0, 3.0]] * 2
    assert x.zero_() is x and not x.numpy().any()
    assert x._version == 10


def test_augmented_assignment_is_in_place_outside_the_graph():
    x = tinylm.ones(3)
    alias = x
    x += 1
    x *= tinylm.tensor([1.0, 2.0, 3.0])
    x -= 0.5
    x /= 2
    assert x is alias and x.tolist() == [0.75, 1.75, 2.75]


def test_inplace_ops_keep_the_tensors_dtype_and_shape():
    counts = tinylm.arange(3)
    counts.add_(2).mul_(3)
    assert counts.dtype == np.int64 and counts.tolist() == [6, 9, 12]
    with pytest.raises(RuntimeError, match="float32 can't be cast to the tensor's dtype int64"):
        counts.add_(0.5)
    with pytest.raises(RuntimeError, match="can't be cast"):
        counts.div_(2)
    with pytest.raises(RuntimeError, match=r"shape \(2, 3\).*\(3,\)"):
        tinylm.zeros(3).add_(tinylm.ones(2, 3))
    with pytest.raises(RuntimeError, match="clone"):
        tinylm.ones(3).expand(2, 3).add_(1)


def test_optimizer_style_update_under_no_grad():
    w = tinylm.tensor([1.0, -2.0], requires_grad=True)
    (w * w).sum().backward()
    with tinylm.no_grad():
        w.sub_(w.grad, alpha=0.25)
        w.grad.zero_()
    assert w.tolist() == [0.5, -1.0] and w.grad.tolist() == [0.0, 0.0]
    assert w.requires_grad and w.is_leaf
    (w * w).sum().backward()  # the updated leaf works as before
    assert w.grad.tolist() == [1.0, -2.0]


@pytest.mark.parametrize("update", [
    lambda w: w.add_(1), lambda w: w.mul_(2), lambda w: w.fill_(0), lambda w: w.zero_(),
    lambda w: w.copy_(tinylm.ones(2)), lambda w: w.masked_fill_(tinylm.tensor([True, False]), 0.0),
    lambda w: w.clamp_(0, 1), lambda w: w.sub_(1), lambda w: w.div_(2), lambda w: w.__iadd__(1),
])  # fmt: skip
def test_a_leaf_that_requires_grad_is_refused_with_pytorchs_error(update):
    w = tinylm.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place operation"):
        update(w)
    assert w.tolist() == [1.0, 1.0] and w._version == 0


def test_inplace_inside_the_graph_is_refused_and_augmented_assignment_rebinds():
    x = tinylm.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    with pytest.raises(RuntimeError, match="inside the autograd graph.*out-of-place add"):
        h.add_(1)
    buffer = tinylm.zeros(2)
    with pytest.raises(RuntimeError, match="values written require grad"):
        buffer.copy_(x)
    before = h
    h += x  # rebinds h to h + x, as `h = h + x` would
    assert h is not before and before.tolist() == [3.0, 6.0]
    total = tinylm.zeros(())
    total += h.sum()
    total.backward()
    assert x.grad.tolist() == [4.0, 4.0]


def _modify_a_saved_value(library):
    """exp saves its output; changing it in place makes its backward wrong."""
    x = library.tensor([0.5, 1.0], requires_grad=True)
    y = x.exp()
    z = (y * y).sum()
    with library.no_grad():
        y.mul_(2)
    z.backward()


@pytest.mark.parity
def test_backward_after_a_saved_value_changed_raises_as_pytorch_does(torch):
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        _modify_a_saved_value(torch)
    expected = r"modified by an in-place operation since: it is at version 1; expected version 0"
    with pytest.raises(RuntimeError, match=expected):
        _modify_a_saved_value(tinylm)


def test_a_change_through_a_view_or_a_detached_tensor_is_caught():
    x = tinylm.tensor([[0.5, 1.0], [1.5, 2.0]], requires_grad=True)
    y = x.exp()
    z = (y * 2).sum()
    row = y.detach()[0]  # shares y's memory
    row.fill_(0.0)
    assert y._version == 1 and row._version == 1
    with pytest.raises(RuntimeError, match="version 1; expected version 0"):
        z.backward()


def test_changing_a_saved_input_after_the_forward_raises():
    weights = tinylm.tensor([1.0, 2.0])  # does not require grad, but mul saves it for x's gradient
    x = tinylm.tensor([3.0, 4.0], requires_grad=True)
    loss = (x * weights).sum()
    weights.add_(1)
    with pytest.raises(RuntimeError, match="Mul.backward"):
        loss.backward()


def test_changes_that_no_backward_reads_are_allowed():
    x = tinylm.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = x.relu()  # saves only the mask x > 0, not x
    with tinylm.no_grad():
        x.mul_(10)
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 1.0]
    x.grad = None
    loss = (x * x).sum()  # recorded after the change: sees the new values
    loss.backward()
    assert x.grad.tolist() == [20.0, -40.0, 60.0]


def test_setitem_counts_as_an_inplace_change():
    x = tinylm.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    z = (y * 3).sum()
    with tinylm.no_grad():
        y[0] = 5.0
    assert y._version == 1
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.backward()


def test_version_entries_go_away_with_their_arrays():
    from tinylm.tensor import _changed

    before = len(_changed)
    for _ in range(50):
        tinylm.zeros(4).add_(1)
    assert len(_changed) <= before + 1


def test_manual_sgd_with_augmented_assignment_updates_the_parameter_itself():
    w = tinylm.tensor([1.0, -2.0], requires_grad=True)
    parameters = [w]
    (w * w).sum().backward()
    with tinylm.no_grad():
        for p in parameters:
            p -= 0.25 * p.grad  # PyTorch tutorials' update: must change w, not rebind p
    assert w.tolist() == [0.5, -1.0] and w.requires_grad and w.is_leaf


def test_assigning_a_value_that_requires_grad_is_refused_rather_than_losing_its_gradient():
    outputs = tinylm.zeros(2, 3)
    h = tinylm.ones(3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="gradient would be lost.*stack"):
        outputs[0] = h
    with tinylm.no_grad():
        outputs[0] = h  # no gradient wanted: allowed
    assert outputs.tolist()[0] == [2.0, 2.0, 2.0] and outputs._version == 1
