"""The ``tinylm`` command: ``prepare``, ``train``, ``sample``, ``eval``.

With no arguments it trains a character-level GPT on the bundled Tiny
Shakespeare (``tinylm train`` with its defaults) into a new numbered run,
``out/run-NNN``; ``sample`` and ``eval`` read the latest run unless given
``--ckpt``. A mistake in what it is given (a missing file, an unknown option,
a checkpoint that does not fit) prints one line and exits with code 2;
Ctrl-C during training writes a checkpoint and exits with code 130.
"""

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

from tinylm.errors import CheckpointError, UserError

EXIT_OS_ERROR = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (argparse prints the whole usage first)."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Help(argparse.RawDescriptionHelpFormatter):
    """--help gives each option's default after its description, where it has one worth showing."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = action.default not in (None, "", argparse.SUPPRESS) and not action.required
        if shown and "default" not in text and action.option_strings and action.nargs != 0:
            text += " (default: %(default)s)"
        return text


def _number(kind, low=None, high=None, low_open=False, high_open=False):
    """An argparse type: a finite ``kind`` (int or float) within the bounds, or a one-line error."""
    low_text = f"{'>' if low_open else '>='} {low}" if low is not None else ""
    high_text = f"{'<' if high_open else '<='} {high}" if high is not None else ""
    wanted = ("an integer " if kind is int else "a finite number ") + " and ".join(t for t in (low_text, high_text) if t)

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        inside = math.isfinite(value) and (low is None or (value > low if low_open else value >= low))
        inside = inside and (high is None or (value < high if high_open else value <= high))
        if not inside:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _device(text):
    """An argparse type: "cpu", or "cuda" where CuPy sees a GPU."""
    from tinylm import backend

    try:
        return backend.normalize_device(text)
    except (ValueError, RuntimeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# ----- prepare --------------------------------------------------------------------------


def _add_prepare(commands):
    parser = commands.add_parser("prepare", help="encode a text file into token files for training",
                                 formatter_class=_Help)  # fmt: skip
    parser.add_argument("--data", required=True, metavar="FILE", help="a UTF-8 text file")
    parser.add_argument("--tokenizer", choices=("char", "word", "bpe"), default="char",
                        help="characters; words and punctuation (CJK text: one character a word); byte-level BPE")
    parser.add_argument("--vocab-size", type=_number(int, 1), default=None, metavar="N",
                        help="the vocabulary size for word and bpe (default: 10000 words, 1000 BPE tokens)")
    parser.add_argument("--val-fraction", type=_number(float, 0, 1, True, True), default=0.1, metavar="X",
                        help="the fraction at the end of the text kept for validation")
    parser.add_argument("--out", required=True, metavar="DIR", help="the directory to write train.bin, val.bin, "
                        "tokenizer.json, meta.json to")  # fmt: skip
    parser.set_defaults(run=_prepare)


def _prepare(args):
    from tinylm.data import prepare
    from tinylm.training.runs import make_directory

    made = not Path(args.out).exists()
    make_directory(args.out)
    try:
        prepared = prepare(args.data, args.out, args.tokenizer, args.vocab_size, args.val_fraction)
    except BaseException:
        if made:  # nothing of a failed prepare stays behind
            shutil.rmtree(args.out, ignore_errors=True)
        raise
    meta = prepared.meta
    print(
        f"{meta['tokenizer']} tokenizer, vocabulary {meta['vocab_size']}: {meta['train_tokens']:,} training and "
        f"{meta['val_tokens']:,} validation tokens ({meta['dtype']}) in {args.out}"
    )


# ----- train -------------------------------------------------------------------------------

# What the train command's options accept, where a metavar says it better than the type's name.
_CHOICES = {"model": "{gpt,lstm,gru,rnn}", "tokenizer": "{char,word,bpe}", "dtype": "{float32,float64}",
            "device": "{cpu,cuda}", "keep": "{latest|best,latest}"}  # fmt: skip


def _add_train(commands):
    from tinylm.training.config import FIELDS, flag

    parser = commands.add_parser(
        "train", help="train a language model (defaults: a character-level GPT on Tiny Shakespeare)",
        description="Train a language model. With no options: a character-level GPT (nanoGPT's Shakespeare-char "
                    "settings, 600 steps) on the bundled Tiny Shakespeare, into a new run out/run-NNN.",
        argument_default=argparse.SUPPRESS,
    )  # fmt: skip
    parser.add_argument("--config", help="a TOML or JSON file of settings, named as the options (flags override it)")
    for name, spec in FIELDS.items():
        default = spec.default
        shown = f" (default: {default})" if default != "" else ""
        help_text = spec.metadata["help"] + shown
        if isinstance(default, bool):
            parser.add_argument(flag(name), action=argparse.BooleanOptionalAction, help=help_text)
        else:
            metavar = _CHOICES.get(name, {int: "N", float: "X", str: "TEXT"}[type(default)])
            parser.add_argument(flag(name), metavar=metavar, help=help_text)
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no sample at the end")
    parser.set_defaults(run=_train)


def _train_config(args):
    """The run's TrainConfig: defaults, then the config file, then the flags; a resumed run's own
    settings first, with only those that may change taken from the file and flags."""
    from tinylm.training import checkpoint, runs
    from tinylm.training.config import make_config, normalized_settings, read_config_file, resume_settings

    flags = {k: v for k, v in vars(args).items() if k not in ("config", "quiet", "run", "command")}
    layers = [(f"config file {args.config}", read_config_file(args.config))] if getattr(args, "config", None) else []
    layers.append(("command line", flags))
    given = {}
    for source, values in layers:
        given.update(normalized_settings(source, values))
    if not given.get("resume"):
        return make_config(("the given settings", given))
    directory = runs.run_directory(given.get("out") or None)
    record = checkpoint.read_record(directory)  # the weights are read once, by the Trainer
    settings = resume_settings(record.get("train_config"), given, directory)
    return make_config(("the resumed run", dict(settings, out=str(directory), resume=True)))


def _train(args):
    from tinylm.training.trainer import Trainer

    config = _train_config(args)
    quiet = getattr(args, "quiet", False)
    trainer = Trainer(config, progress=not quiet)
    if trainer.finished:
        last = trainer.log.last("val_loss")
        loss = f" (val loss {last['val_loss']:.4f})" if last and last["step"] == trainer.step else ""
        print(f"the run in {trainer.out} has already finished its {trainer.step} steps{loss}; to train it further, "
              f"give a larger --max-iters", file=sys.stderr)  # fmt: skip
        return
    what = f"continuing from step {trainer.step}" if config.resume else "training"
    print(
        f"{what} a {trainer.config.model} of {trainer.model.num_parameters():,} parameters on "
        f"{len(trainer.data.train):,} tokens (vocabulary {trainer.vocab_size}) in {trainer.out}, "
        f"{trainer.threads.describe()}",
        file=sys.stderr,
    )
    result = trainer.run()
    skipped = f", {result.skipped_steps} steps skipped (not finite)" if result.skipped_steps else ""
    print(
        f"step {result.step}: val loss {result.val_loss:.4f} (perplexity {math.exp(result.val_loss):.2f}), "
        f"best {result.best_val_loss:.4f}, {result.seconds:.1f} s{skipped}; checkpoint in {result.out}"
    )
    if not quiet:
        temperature, top_k, tokens = 0.8, 200, 300
        tokenizer = trainer.data.tokenizer
        prompt = "\n" if _encodes(tokenizer, "\n") else tokenizer.decode([int(trainer.data.train[0])])
        text = _generate_text(trainer.model, tokenizer, prompt, tokens, temperature, top_k, None, trainer.config.seed,
                              1, True, trainer.device)[0]  # fmt: skip
        print(f"\n--- a sample of {tokens} tokens (temperature {temperature}, top-k {top_k}); more with: "
              f"tinylm sample --ckpt {result.out} ---\n{text}")  # fmt: skip


# ----- sample ----------------------------------------------------------------------------


def _add_sample(commands):
    parser = commands.add_parser("sample", help="generate text from a trained checkpoint", formatter_class=_Help,
                                 description="Continue a prompt with a trained run's model (default: the latest "
                                             "run, out/latest).")  # fmt: skip
    parser.add_argument("--ckpt", default="out", metavar="DIR",
                        help="a run directory, or a runs folder whose latest run is read")
    parser.add_argument("--prompt", default="\n", metavar="TEXT", help="the text to continue (default: a newline)")
    parser.add_argument("--max-new-tokens", type=_number(int, 0), default=500, metavar="N", help="tokens to generate")
    parser.add_argument("--temperature", type=_number(float, 0), default=0.8, metavar="X",
                        help="divides the logits: below 1 is surer, above 1 more varied; 0 picks the most likely token")
    parser.add_argument("--top-k", type=_number(int, 1), default=200, metavar="N",
                        help="draw only from the k most likely tokens")
    parser.add_argument("--top-p", type=_number(float, 0, 1, low_open=True), default=None, metavar="X",
                        help="draw only from the most likely tokens that together reach this probability")
    parser.add_argument("--seed", type=_number(int, 0, 2**63 - 1), default=1337, metavar="N",
                        help="the random seed of the draws")
    parser.add_argument("--num-samples", type=_number(int, 1), default=1, metavar="N",
                        help="samples to generate, side by side")
    parser.add_argument("--no-cache", action="store_true", help="recompute the context for every token (slower)")
    parser.add_argument("--device", type=_device, default="cpu", metavar="{cpu,cuda}", help="where the model runs")
    parser.set_defaults(run=_sample)


def load_for_inference(path, device="cpu"):
    """``(model, tokenizer, record)`` of the run ``path`` names (a run, or a runs folder's latest),
    in eval mode, on ``device``; the optimizer's state is not read."""
    from tinylm.training import inference, runs

    return inference.load_for_inference(runs.run_directory(path), device)


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


def _encodes(tokenizer, text):
    """Whether ``text`` is one the tokenizer can encode (a character vocabulary may lack it)."""
    from tinylm.data.tokenizers import UnknownCharacterError

    try:
        return bool(tokenizer.encode(text))
    except UnknownCharacterError:
        return False


def _generate_text(model, tokenizer, prompt, max_new_tokens, temperature, top_k, top_p, seed, num_samples, use_cache,
                   device):  # fmt: skip
    import tinylm

    ids = _encode(tokenizer, prompt, f"the prompt {prompt!r}")
    tinylm.manual_seed(seed)
    idx = tinylm.tensor([ids] * num_samples, device=device)
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, use_cache=use_cache)
    return [tokenizer.decode(row) for row in out.numpy().tolist()]


def _sample(args):
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
    parser = commands.add_parser("eval", help="loss, perplexity and next-token accuracy of a checkpoint on a text",
                                 formatter_class=_Help)  # fmt: skip
    parser.add_argument("--ckpt", default="out", metavar="DIR",
                        help="a run directory, or a runs folder whose latest run is read")
    parser.add_argument("--data", required=True, metavar="FILE", help="a UTF-8 text file to score")
    parser.add_argument("--batch-size", type=_number(int, 1), default=32, metavar="N", help="windows per forward pass")
    parser.add_argument("--device", type=_device, default="cpu", metavar="{cpu,cuda}", help="where the model runs")
    parser.set_defaults(run=_eval)


def _eval(args):
    from tinylm.data import read_text
    from tinylm.training.evaluate import evaluate_text

    model, tokenizer, record = load_for_inference(args.ckpt, args.device)
    ids = _encode(tokenizer, read_text(args.data), f"the text of {args.data}")
    if len(ids) < 2:
        raise UserError(f"the text of {args.data} is {len(ids)} token long; eval needs at least 2 (one to read, "
                        "one to predict)")  # fmt: skip
    result = evaluate_text(model, ids, record["model"]["block_size"], args.batch_size, args.device, progress=True)
    print(
        f"loss {result.loss:.4f}  perplexity {result.perplexity:.2f}  accuracy {result.accuracy:.4f}  "
        f"({result.tokens:,} tokens predicted)"
    )


# ----- the command ---------------------------------------------------------------------------


def build_parser():
    from tinylm import __version__

    parser = _Parser(prog="tinylm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tinylm {__version__}")
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
    except SystemExit as stop:  # a usage mistake (one line already printed), --help or --version
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
    except OSError as error:  # the disk is full, a file vanished: one line, not a traceback
        print(f"tinylm {args.command}: error: {error}", file=sys.stderr)
        return EXIT_OS_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
