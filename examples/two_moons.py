"""Train a small network to separate two interleaved half-moons, with tinylm's autograd.

The smallest complete use of the engine: tensors, a model of nn layers, a
cross-entropy-like loss built from primitives, backward, and a hand-written
gradient-descent step. Prints the loss as it falls and the final accuracy.

    python examples/two_moons.py
"""

import numpy as np

import tinylm
from tinylm import nn


def two_moons(n, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(angle), 1 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], axis=1) + rng.normal(0, noise, (n, 2))
    return points.astype(np.float32), upper.astype(np.int64)


def main():
    tinylm.manual_seed(0)
    points, labels = two_moons(512)
    x, y = tinylm.tensor(points), tinylm.tensor(labels)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2))
    for step in range(301):
        log_probabilities = model(x).log_softmax(-1)
        loss = -log_probabilities[tinylm.arange(len(labels)), y].mean()
        model.zero_grad()
        loss.backward()
        with tinylm.no_grad():
            for parameter in model.parameters():
                parameter.data -= 0.5 * parameter.grad.data
        if step % 50 == 0:
            print(f"step {step:3d}  loss {loss.item():.4f}")
    accuracy = (model(x).argmax(-1) == y).numpy().mean()
    print(f"accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
