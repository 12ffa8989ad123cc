"""Loading a checkpoint to use it: the model and tokenizer that ``tinylm sample`` and ``tinylm eval`` run.

Inference needs the weights, the model's settings and the tokenizer, nothing
of the training state: the optimizer's section of a checkpoint is neither
read nor checked, so a checkpoint whose optimizer state is damaged or absent
still samples.
"""

from tinylm.errors import CheckpointError


def load_for_inference(directory, device="cpu"):
    """``(model, tokenizer, record)`` from the checkpoint in ``directory``, the model in eval mode on ``device``.

    Raises ``CheckpointError`` for anything ``checkpoint.load_checkpoint`` refuses
    (a damaged record, weights file or tensor), and for a tokenizer that cannot be
    rebuilt, whose vocabulary is not the model's, or weights that do not fit the
    model the record describes.
    """
    from tinylm.data.tokenizers import TokenizerFileError, tokenizer_from_payload
    from tinylm.models import build_model
    from tinylm.training import checkpoint

    record, model_state, _ = checkpoint.load_checkpoint(directory, optimizer=False)
    try:
        tokenizer = tokenizer_from_payload(record["tokenizer"], f"the checkpoint in {directory}")
        model = build_model(record["model"])  # its settings are checked: this cannot fail on them
    except (KeyError, TypeError, ValueError, TokenizerFileError) as error:
        raise CheckpointError(
            f"the checkpoint in {directory} does not describe its model or tokenizer: {error}"
        ) from None
    if tokenizer.vocab_size != record["model"]["vocab_size"]:
        raise CheckpointError(
            f"the checkpoint in {directory} has a model for {record['model']['vocab_size']} tokens but a tokenizer "
            f"of {tokenizer.vocab_size}"
        )
    try:
        model.load_state_dict(model_state)
    except ValueError as error:
        raise CheckpointError(f"the weights in {directory} do not fit the recorded model: {error}") from None
    return model.to(device).eval(), tokenizer, record
