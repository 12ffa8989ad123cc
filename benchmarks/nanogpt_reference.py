"""nanoGPT's CPU run of Shakespeare-char in plain PyTorch, to set tinylm's quality figures beside.

    python benchmarks/nanogpt_reference.py --seed 1337                    # nanoGPT's procedure
    python benchmarks/nanogpt_reference.py --seed 1337 --init tinylm      # from tinylm's initial weights
    python benchmarks/nanogpt_reference.py --seed 1337 --batches tinylm   # on tinylm's batch stream

The procedure is nanoGPT's ``train.py`` with its README's CPU settings (the
same as ``tinylm train --max-iters 2000``): the model of ``torch_peers.GPT``,
AdamW (0.9, 0.99) with weight decay 0.1 on matrices, lr 1e-3 with 100 warmup
steps and cosine decay to 1e-4, clipping at 1.0, batches of 12 random windows
of 64, 20 batches per split at every 250th step. It draws from torch's
generator in nanoGPT's order (the initial weights, then the batches), so a seed
gives nanoGPT's own run: ``--seed 1337`` (nanoGPT's) prints, evaluation for
evaluation, what nanoGPT's ``train.py`` with its README's CPU command prints on
the development machine (torch 2.13, 2 threads), down to val loss 1.8857 at
step 2000, the issue's "1.886". ``--init`` and ``--batches``
swap in tinylm's initial weights (``tinylm train``'s, for the same seed) or
tinylm's random windows (``tinylm.data.random_windows`` on tinylm's
generator), so that a difference between the two projects' losses can be
traced to the weights they start from or to the batches they see; with
both, it is ``tinylm train --max-iters 2000`` computed by PyTorch (the step-0
losses agree to the printed digits, and later ones to rounding).
Needs torch; prints the losses at each evaluation, and at the end the loss on
every token of the validation split (the figure without the 20-batch
estimate's sampling noise).
"""

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from torch_peers import GPT  # noqa: E402

import tinylm  # noqa: E402
import tinylm.random  # noqa: E402
from tinylm.data import BUNDLED_CORPUS, random_windows  # noqa: E402

BLOCK, BATCH, STEPS, WARMUP, LR, MIN_LR = 64, 12, 2000, 100, 1e-3, 1e-4
EVAL_INTERVAL, EVAL_BATCHES = 250, 20


# The schedule, the vocabulary and the evaluation are written out here rather
# than taken from tinylm (warmup_cosine, CharTokenizer, estimate_loss): a
# reference that shared tinylm's code would share its mistakes too.
def learning_rate(step):
    if step < WARMUP:
        return LR * (step + 1) / (WARMUP + 1)
    return MIN_LR + 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / (STEPS - WARMUP))) * (LR - MIN_LR)


def tinylm_start(seed):
    """What ``tinylm train --seed SEED`` starts from: its initial weights, named as
    ``torch_peers.GPT`` names them, and its generator's state after drawing them."""
    from tinylm.training.config import TrainConfig
    from tinylm.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(TrainConfig(max_iters=1, seed=seed, out=out, overwrite=True), progress=False)
    names = {"transformer.": "", "mlp.": ""}
    state = {}
    for name, tensor in trainer.model.state_dict().items():
        for old, new in names.items():
            name = name.replace(old, new)
        state[name] = torch.tensor(tensor.numpy())
    return state, tinylm.random.get_rng_state()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--init", choices=("torch", "tinylm"), default="torch")
    parser.add_argument("--batches", choices=("torch", "tinylm"), default="torch")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    text = Path(BUNDLED_CORPUS).read_text(encoding="utf-8")
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    data = np.array([stoi[c] for c in text], dtype=np.uint16)
    split = int(len(data) * 0.9)
    train, val = data[:split], data[split:]

    torch.manual_seed(args.seed)
    model = GPT(len(stoi), BLOCK, n_layer=4, n_head=4, n_embd=128)
    tinylm_weights, tinylm_stream = tinylm_start(args.seed)
    if args.init == "tinylm":
        model.load_state_dict(tinylm_weights)
    tinylm.random.set_rng_state(tinylm_stream)  # --batches tinylm: the windows tinylm train would draw

    def get_batch(ids):
        if args.batches == "tinylm":
            x, y = random_windows(ids, BATCH, BLOCK)
            return torch.from_numpy(x.numpy()), torch.from_numpy(y.numpy())
        starts = torch.randint(len(ids) - BLOCK, (BATCH,))  # nanoGPT's get_batch
        x = torch.stack([torch.from_numpy(ids[i : i + BLOCK].astype(np.int64)) for i in starts])
        y = torch.stack([torch.from_numpy(ids[i + 1 : i + 1 + BLOCK].astype(np.int64)) for i in starts])
        return x, y

    @torch.no_grad()
    def estimate_loss():
        model.eval()
        losses = {name: float(np.mean([model(*get_batch(ids))[1].item() for _ in range(EVAL_BATCHES)]))
                  for name, ids in (("train", train), ("val", val))}  # fmt: skip
        model.train()
        return losses

    params = list(model.parameters())
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                                  lr=LR, betas=(0.9, 0.99))  # fmt: skip
    # nanoGPT draws each step's batch before the evaluation of that step, tinylm after it.
    nanogpt_order = args.batches == "torch"
    start = time.perf_counter()
    x, y = get_batch(train) if nanogpt_order else (None, None)
    for step in range(STEPS + 1):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step)
        if step % EVAL_INTERVAL == 0:
            losses = estimate_loss()
            print(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        if step == STEPS:
            break
        if not nanogpt_order:
            x, y = get_batch(train)
        _, loss = model(x, y)
        if nanogpt_order:
            x, y = get_batch(train)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    print(f"on the whole val split: loss {whole_split_loss(model, val):.4f}")


@torch.no_grad()
def whole_split_loss(model, ids):
    """Mean loss on every token of ``ids``, in windows of BLOCK + 1 that overlap by one token
    (as ``tinylm eval`` and ``benchmarks/quality_run.py`` score it)."""
    model.eval()
    starts = np.arange(0, len(ids) - BLOCK, BLOCK)
    total, count = 0.0, 0
    for chunk in np.array_split(starts, max(1, len(starts) // 256)):
        windows = torch.from_numpy(ids[chunk[:, None] + np.arange(BLOCK + 1)].astype(np.int64))
        logits, _ = model(windows[:, :-1])
        targets = windows[:, 1:].flatten()
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets, reduction="sum").item()
        count += windows[:, 1:].numel()
    tail = len(ids) - 1 - len(starts) * BLOCK
    if tail > 0:
        window = torch.from_numpy(ids[None, -tail - 1 :].astype(np.int64))
        logits, _ = model(window[:, :-1])
        total += torch.nn.functional.cross_entropy(logits[0], window[0, 1:], reduction="sum").item()
        count += tail
    return total / count


if __name__ == "__main__":
    main()
