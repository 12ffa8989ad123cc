"""Time byte-level BPE: training (merges/s) and encoding (MB/s).

    python benchmarks/bench_bpe.py [--data PATH] [--chars N] [--merges N]

By default it trains 1,000 merges on the first 1,000,000 characters of Tiny
Shakespeare, then encodes the same text twice: with an empty chunk cache (as
the CLI does when it encodes a corpus once) and with a warm one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import tinylm
from tinylm.data import BPETokenizer

CORPUS = "tinyshakespeare.txt"
DEFAULT_DATA_PATHS = (
    Path(tinylm.__file__).parent / "data" / "corpora" / CORPUS,
    Path(__file__).resolve().parents[2] / "shared" / "data" / CORPUS,
)


def default_data_path() -> Path | None:
    return next((path for path in DEFAULT_DATA_PATHS if path.exists()), None)


def timed(fn, *args, **kwargs):
    """(fn's result, wall seconds)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data_path(), help="UTF-8 text file to train on")
    parser.add_argument("--chars", type=int, default=1_000_000, help="characters of the file to use")
    parser.add_argument("--merges", type=int, default=1000, help="merges to learn")
    args = parser.parse_args()
    if args.data is None:
        parser.error(f"no --data given and none of the default corpora exist: {[str(p) for p in DEFAULT_DATA_PATHS]}")
    if not args.data.is_file():
        parser.error(f"--data {args.data} is not a file")

    text = args.data.read_text(encoding="utf-8")[: args.chars]
    n_bytes = len(text.encode("utf-8"))
    print(f"data: {args.data} ({len(text):,} characters, {n_bytes / 1e6:.2f} MB)")

    tokenizer, train_s = timed(BPETokenizer.train, text, 256 + args.merges)
    learned = len(tokenizer.merges)
    print(f"train: {learned} merges in {train_s:.2f} s ({learned / train_s:,.0f} merges/s)")

    cold = BPETokenizer(tokenizer.merges, split=tokenizer.split)  # a copy with an empty chunk cache
    ids, cold_s = timed(cold.encode, text)
    _, warm_s = timed(cold.encode, text)
    print(f"encode, cold cache: {cold_s:.2f} s ({n_bytes / 1e6 / cold_s:.2f} MB/s)")
    print(f"encode, warm cache: {warm_s:.2f} s ({n_bytes / 1e6 / warm_s:.2f} MB/s)")
    decoded, decode_s = timed(cold.decode, ids)
    round_trip = "ok" if decoded == text else "FAILED"
    print(f"decode: {decode_s:.2f} s ({n_bytes / 1e6 / decode_s:.2f} MB/s), round trip {round_trip}")
    print(f"compression: {len(ids):,} tokens, {n_bytes / len(ids):.2f} bytes per token")


if __name__ == "__main__":
    main()
