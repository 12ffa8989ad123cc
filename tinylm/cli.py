"""The ``tinylm`` command: ``prepare``, ``train``, ``sample``, ``eval``.

With no arguments it trains a character-level GPT on the bundled Tiny
Shakespeare (``tinylm train`` with its defaults). A mistake in what it is
given (a missing file, an unknown option, a checkpoint that does not fit)
prints one line and exits with code 2; Ctrl-C during training writes a
checkpoint and exits with code 130.
"""

import argparse
import math
import sys
import time

from tinylm.errors import CheckpointError, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (argparse prints the whole usage first)."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----- prepare --------------------------------------------------------------------------


def _add_prepare(commands):
    parser = commands.add_parser("prepare", help="encode a text file into token files for training")
    parser.add_argument("--data", required=True, help="a UTF-8 text file")
    parser.add_argument("--tokenizer", choices=("char", "word", "bpe"), default="char")
    parser.add_argument("--vocab-size", type=int, default=None, help="for word and bpe")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="the last part of the text kept for validation")
    parser.add_argument("--out", required=True, help="the directory to write train.bin, val.bin, tokenizer.json, meta.json to")
    parser.set_defaults(run=_prepare)


def _prepare(args):
    from tinylm.data import prepare

    prepared = prepare(args.data, args.out, args.tokenizer, args.vocab_size, args.val_fraction)
    meta = prepared.meta
    print(
        f"{meta['tokenizer']} tokenizer, vocabulary {meta['vocab_size']}: {meta['train_tokens']:,} training and "
        f"{meta['val_tokens']:,} validation tokens ({meta['dtype']}) in {args.out}"
    )


# ----- train -------------------------------------------------------------------------------


def _add_train(commands):
    from tinylm.training.config import FIELDS

    parser = commands.add_parser(
        "train", help="train a language model (defaults: a character-level GPT on Tiny Shakespeare)",
        argument_default=argparse.SUPPRESS,
    )  # fmt: skip
    parser.add_argument("--config", help="a TOML or JSON file of settings (flags override it)")
    for name, spec in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(spec.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=f"(default {spec.default})")
        else:
            parser.add_argument(flag, metavar=type(spec.default).__name__.upper(), help=f"(default {spec.default!r})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no sample at the end")
    parser.set_defaults(run=_train)


def _train(args):
    from tinylm.training.config import make_config, read_config_file
    from tinylm.training.trainer import Trainer

    settings = {k: v for k, v in vars(args).items() if k not in ("config", "quiet", "run", "command")}
    layers = [(f"config file {args.config}", read_config_file(args.config))] if getattr(args, "config", None) else []
    config = make_config(*layers, ("command line", settings))
    quiet = getattr(args, "quiet", False)
    trainer = Trainer(config, progress=not quiet)
    print(
        f"training a {config.model} of {trainer.model.num_parameters():,} parameters on "
        f"{len(trainer.data.train):,} tokens (vocabulary {trainer.vocab_size}) into {config.out}",
        file=sys.stderr,
    )
    result = trainer.run()
    print(
        f"step {result.step}: val loss {result.val_loss:.4f} (perplexity {math.exp(result.val_loss):.2f}), "
        f"best {result.best_val_loss:.4f}, {result.seconds:.1f} s; checkpoint in {result.out}"
    )
    if not quiet:
        print("\n" + _generate_text(trainer.model, trainer.data.tokenizer, "\n", 300, 0.8, 200, None, config.seed, 1,
                                    True, config.device)[0])  # fmt: skip


# ----- sample ----------------------------------------------------------------------------


def _add_sample(commands):
    parser = commands.add_parser("sample", help="generate text from a trained checkpoint")
    parser.add_argument("--ckpt", default="out", help="the checkpoint directory (a training run's --out)")
    parser.add_argument("--prompt", default="\n", help="the text to continue (default: a newline)")
    parser.add_argument("--max-new-tokens", type=int, default=500)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 picks the most likely token")
    parser.add_argument("--top-k", type=int, default=200)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--no-cache", action="store_true", help="recompute the context for every token (slower)")
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(run=_sample)


def load_for_inference(directory, device="cpu"):
    """``(model, tokenizer, record)`` from a checkpoint, in eval mode, on ``device``."""
    from tinylm.models import build_model
    from tinylm.training import checkpoint

    from tinylm.data.tokenizers import TokenizerFileError, tokenizer_from_payload

    record, model_state, _ = checkpoint.load_checkpoint(directory)
    try:
        tokenizer = tokenizer_from_payload(record.get("tokenizer"), f"the checkpoint in {directory}")
        model = build_model(record["model"])
    except (KeyError, TypeError, ValueError, TokenizerFileError) as error:
        raise CheckpointError(f"the checkpoint in {directory} does not describe its model or tokenizer: {error}") from None
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


def _encode(tokenizer, text, what):
    """The ids of ``text``, or a UserError that names ``what`` the text is ("the prompt", a file)."""
    from tinylm.data.tokenizers import UnknownCharacterError

    try:
        ids = tokenizer.encode(text)
    except UnknownCharacterError as error:
        raise UserError(f"{what} cannot be encoded: {error}") from None
    if not ids:
        raise UserError(f"{what} encodes to no tokens; give some text")
    return ids


def _generate_text(model, tokenizer, prompt, max_new_tokens, temperature, top_k, top_p, seed, num_samples, use_cache,
                   device):  # fmt: skip
    import tinylm

    ids = _encode(tokenizer, prompt, f"the prompt {prompt!r}")
    tinylm.manual_seed(seed)
    idx = tinylm.tensor([ids] * num_samples, device=device)
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, use_cache=use_cache)
    return [tokenizer.decode(row) for row in out.numpy().tolist()]


def _sample(args):
    if args.max_new_tokens < 0 or args.num_samples < 1:
        raise UserError("--max-new-tokens must not be negative and --num-samples must be at least 1")
    model, tokenizer, _ = load_for_inference(args.ckpt, args.device)
    start = time.perf_counter()
    texts = _generate_text(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature, args.top_k,
                           args.top_p, args.seed, args.num_samples, not args.no_cache, args.device)  # fmt: skip
    seconds = time.perf_counter() - start
    print("\n---------------\n".join(texts))
    rate = args.max_new_tokens * args.num_samples / seconds if seconds else math.inf
    print(f"[{args.max_new_tokens * args.num_samples} tokens in {seconds:.2f} s, {rate:.0f} tokens/s]", file=sys.stderr)


# ----- eval ----------------------------------------------------------------------------------


def _add_eval(commands):
    parser = commands.add_parser("eval", help="loss, perplexity and next-token accuracy of a checkpoint on a text")
    parser.add_argument("--ckpt", default="out", help="the checkpoint directory")
    parser.add_argument("--data", required=True, help="a UTF-8 text file")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(run=_eval)


def _eval(args):
    from tinylm.data import read_text
    from tinylm.training.evaluate import evaluate_text

    model, tokenizer, record = load_for_inference(args.ckpt, args.device)
    ids = _encode(tokenizer, read_text(args.data), f"the text of {args.data}")
    result = evaluate_text(model, ids, record["model"]["block_size"], args.batch_size, args.device)
    print(
        f"loss {result.loss:.4f}  perplexity {result.perplexity:.2f}  accuracy {result.accuracy:.4f}  "
        f"({result.tokens:,} tokens predicted)"
    )


# ----- the command ---------------------------------------------------------------------------


def build_parser():
    parser = _Parser(prog="tinylm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    for add in (_add_prepare, _add_train, _add_sample, _add_eval):
        add(commands)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        argv = ["train"]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # a usage mistake (one line already printed), or --help
        return stop.code
    if not hasattr(args, "run"):
        build_parser().print_help()
        return EXIT_USER_ERROR
    from tinylm.data.tokenizers import TokenIdError, TokenizerFileError
    from tinylm.training.trainer import TrainingInterrupted

    try:
        args.run(args)
    except (UserError, TokenizerFileError, TokenIdError, FileNotFoundError) as error:
        print(f"tinylm {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except TrainingInterrupted as stop:
        print(f"\ntinylm train: {stop}; continue with: tinylm train --resume --out {stop.directory}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\ntinylm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
