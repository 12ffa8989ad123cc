"""Batches of sequences of different lengths: padding and packing, as ``torch.nn.utils.rnn``.

A padded batch is one tensor (T, B, *) (or (B, T, *) with ``batch_first``)
whose sequence b fills its first ``lengths[b]`` steps. A ``PackedSequence``
keeps only the real steps, time-major: sorted by length (longest first), step
t holds the first ``batch_sizes[t]`` sequences, so ``data`` is

    x[0, s_0], ..., x[0, s_{B-1}], x[1, s_0], ..., x[1, s_{batch_sizes[1]-1}], ...

with s = ``sorted_indices`` (the identity when the batch came sorted).
``RNN``, ``LSTM`` and ``GRU`` take one and return one.

Every conversion here is one gather (integer-array indexing, whose backward is
a scatter-add) from the source rows, with a row of ``padding_value`` appended
where padding has to come from somewhere; so gradients flow through all of
them, and padding positions get none.

Index tensors (``batch_sizes``, ``sorted_indices``, ``unsorted_indices``,
returned lengths) are int64 and kept on the CPU, whatever device ``data`` is on.
"""

from typing import NamedTuple, Optional

import numpy as np

from tinylm import ops
from tinylm.backend import array_module
from tinylm.tensor import Tensor, wrap

__all__ = [
    "PackedSequence", "pad_sequence", "pack_padded_sequence", "pad_packed_sequence", "pack_sequence",
    "unpad_sequence", "unpack_sequence",
]  # fmt: skip


class PackedSequence(NamedTuple):
    """``data`` (sum of lengths, *), ``batch_sizes`` (max length,) int64: how many sequences
    step t has; ``sorted_indices`` (B,): which original sequence each sorted position holds,
    and ``unsorted_indices`` its inverse (both None when the batch came sorted)."""

    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Optional[Tensor] = None
    unsorted_indices: Optional[Tensor] = None

    def to(self, *args, **kwargs):
        """The same packing with ``data`` moved or cast (``Tensor.to``'s arguments)."""
        return self._replace(data=self.data.to(*args, **kwargs))

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    @property
    def is_cuda(self):
        return self.data.device != "cpu"


def _index_tensor(array):
    return wrap(np.ascontiguousarray(array, dtype=np.int64))


def _lengths_array(lengths, batch, caller):
    """``lengths`` (a list, a tuple, an array or a tensor) as an int64 NumPy array of ``batch`` positive values."""
    if isinstance(lengths, Tensor):
        lengths = lengths.numpy()
    values = np.asarray(lengths)
    if values.ndim != 1 or values.shape[0] != batch or (values.size and values.dtype.kind not in "iu"):
        raise ValueError(f"{caller}: expected {batch} integer lengths, one per sequence, got {lengths!r:.80}")
    values = values.astype(np.int64)
    if values.size and values.min() < 1:
        raise ValueError(f"{caller}: every length must be at least 1, got {values.min()}")
    return values


def _with_padding_row(rows, padding_value):
    """``rows`` (N, *) with one more row of ``padding_value`` at the end (index N)."""
    xp = array_module(rows.data)
    padding = wrap(xp.full((1,) + tuple(rows.shape[1:]), padding_value, dtype=rows.dtype))
    return ops.cat([rows, padding], dim=0)


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """A list of B tensors (L_b, *) -> one (max L, B, *) tensor (or (B, max L, *) with
    ``batch_first``), each sequence followed (``padding_side="left"``: preceded) by
    ``padding_value``."""
    sequences = list(sequences)
    if not sequences or not all(isinstance(s, Tensor) and s.ndim >= 1 for s in sequences):
        raise ValueError("pad_sequence: expected a non-empty list of tensors of at least one dimension")
    if padding_side not in ("right", "left"):
        raise ValueError(f"pad_sequence: padding_side must be 'right' or 'left', got {padding_side!r}")
    trailing = tuple(sequences[0].shape[1:])
    for b, s in enumerate(sequences):
        if tuple(s.shape[1:]) != trailing:
            raise ValueError(f"pad_sequence: sequence {b} has shape {tuple(s.shape)}, but sequence 0 has "
                             f"{tuple(sequences[0].shape)}; all must agree after the first dimension")  # fmt: skip
    lengths = np.array([s.shape[0] for s in sequences], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    longest = int(lengths.max())
    steps = np.arange(longest)[None, :]  # (1, T)
    shift = (longest - lengths)[:, None] if padding_side == "left" else 0
    position = steps - shift  # the step of the sequence that lands at this column
    real = (position >= 0) & (position < lengths[:, None])
    index = np.where(real, starts[:, None] + position, lengths.sum())  # (B, T); the padding row is last
    if not batch_first:
        index = index.T
    flat = _with_padding_row(ops.cat(sequences, dim=0), padding_value)
    return flat[index.reshape(-1)].reshape(*index.shape, *trailing)


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):  # noqa: A002
    """A padded batch (T, B, *) (or (B, T, *) with ``batch_first``) and the B lengths -> a
    ``PackedSequence``. With ``enforce_sorted`` the lengths must not increase; otherwise the
    batch is sorted here (longest first, ties in their order) and the order kept in the result."""
    caller = "pack_padded_sequence"
    if not isinstance(input, Tensor) or input.ndim < 2:
        raise ValueError(f"{caller}: expected a padded tensor of at least 2 dimensions, got "
                         f"{tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__}")  # fmt: skip
    x = input.transpose(0, 1) if batch_first else input  # (T, B, *)
    length, batch = x.shape[0], x.shape[1]
    lengths = _lengths_array(lengths, batch, caller)
    if lengths.max() > length:
        raise ValueError(f"{caller}: a length of {lengths.max()} is longer than the padded input's {length} steps")
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise ValueError(f"{caller}: the lengths {lengths.tolist()} must be sorted in decreasing order when "
                             "enforce_sorted is True; pass enforce_sorted=False to have them sorted here")  # fmt: skip
        order, sorted_indices, unsorted_indices = np.arange(batch), None, None
    else:
        order = np.argsort(-lengths, kind="stable")
        sorted_indices, unsorted_indices = _index_tensor(order), _index_tensor(np.argsort(order))
    sorted_lengths = lengths[order]
    batch_sizes = (sorted_lengths[None, :] > np.arange(sorted_lengths[0])[:, None]).sum(axis=1)
    # the rows of x (T * B, *) in packed order: step t, then its first batch_sizes[t] sorted sequences
    index = np.concatenate([t * batch + order[:n] for t, n in enumerate(batch_sizes)])
    data = x.reshape(length * batch, *x.shape[2:])[index]
    return PackedSequence(data, _index_tensor(batch_sizes), sorted_indices, unsorted_indices)


def _packed_parts(sequence, caller):
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"{caller}: expected a PackedSequence, got {type(sequence).__name__}")
    sizes = sequence.batch_sizes.numpy().astype(np.int64)
    order = None if sequence.sorted_indices is None else sequence.sorted_indices.numpy()
    return sizes, order


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """A ``PackedSequence`` -> (padded (T, B, *) or (B, T, *), lengths (B,) int64), the
    sequences in their original order; ``total_length`` pads to that many steps."""
    caller = "pad_packed_sequence"
    sizes, order = _packed_parts(sequence, caller)
    length, batch = len(sizes), int(sizes[0])
    if total_length is not None:
        if total_length < length:
            raise ValueError(f"{caller}: total_length {total_length} is shorter than the longest sequence "
                             f"({length} steps)")  # fmt: skip
        length = total_length
    sorted_lengths = (sizes[None, :] > np.arange(batch)[:, None]).sum(axis=1)  # (B,), longest first
    offsets = np.concatenate([[0], np.cumsum(sizes)])  # where each step's rows start in data
    inverse = np.arange(batch) if order is None else np.argsort(order)  # sorted position of each sequence
    steps = np.arange(length)[None, :]  # (1, T)
    position = inverse[:, None]  # (B, 1)
    real = steps < sorted_lengths[position]
    index = np.where(real, offsets[np.minimum(steps, len(sizes) - 1)] + position, offsets[-1])  # (B, T)
    if not batch_first:
        index = index.T
    rows = _with_padding_row(sequence.data, padding_value)
    padded = rows[index.reshape(-1)].reshape(*index.shape, *sequence.data.shape[1:])
    return padded, _index_tensor(sorted_lengths[inverse])


def pack_sequence(sequences, enforce_sorted=True):
    """A list of tensors (L_b, *) -> a ``PackedSequence`` (``pad_sequence``, then ``pack_padded_sequence``)."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpad_sequence(padded_sequences, lengths, batch_first=False):
    """The inverse of ``pad_sequence``: a list of B tensors (L_b, *)."""
    x = padded_sequences if batch_first else padded_sequences.transpose(0, 1)
    lengths = _lengths_array(lengths, x.shape[0], "unpad_sequence")
    return [x[b, : int(n)] for b, n in enumerate(lengths)]


def unpack_sequence(packed_sequences):
    """The inverse of ``pack_sequence``: a list of tensors (L_b, *), in the original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
