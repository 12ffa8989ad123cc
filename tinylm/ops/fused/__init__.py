"""Fused layer-level operations, each one Function with a hand-written backward.

Where ``tinylm.ops`` has small primitives, these are whole layers (a linear
map with its bias, layer norm, softmax cross-entropy, a recurrent sequence,
attention) written as one forward/backward pair from the values the forward
saved, as llm.c writes its ``*_forward`` / ``*_backward`` functions. The
public way to call them is ``tinylm.nn.functional``.
"""
