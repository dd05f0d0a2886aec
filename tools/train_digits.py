"""Fine-tune a zoo model on scikit-learn's handwritten digits: the real-data model the precision tests judge.

    OMP_NUM_THREADS=1 python tools/train_digits.py        # writes tests/data/digits_mobilenet_v3_small_a0.35_r64.pth
    python tools/train_digits.py --model mobilenet_v2 --alpha 0.35 --res 64 --out /tmp/mv2.pth --json runs.jsonl
    python tools/train_digits.py --write-data digits      # only the image folders: digits/{train,calib,test}/<class>/

The splits are edgekit.precision.digits' (train 1000 / calib 300 / test 497, as 32x32 PNG folders); the training
inputs are read back from those PNGs through edgekit's one preprocessing (RGB, shorter side to round(res / 0.875),
centre crop, ImageNet mean/std), so calibration and eval on the folders see exactly what training saw. Augmentation
(train only): a random translation by up to ``--shift`` pixels (edge replicated). AdamW with a one-cycle schedule.

Why MobileNetV3-Small at alpha 0.35 and 64 px (the default): measured over MobileNetV1/V2/V3-Small and ShuffleNetV2 at
32 and 64 px (40 epochs, a loaded 2-core machine), it is the smallest state_dict (1.5 MB) with the best held-out
accuracy (97.4 % on the 497 test images), its INT8 file (per-channel, min-max, 200 calibration images) loses nothing,
and it has what makes INT8 hard on the main job model (hard-swish, squeeze-excitation). 32 px loses 2-30 points on
every family (the 8x8 scans need the resolution to survive the stride-32 backbone).

Deterministic: seeded init, shuffling and augmentation, torch.use_deterministic_algorithms(True), one thread.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def load_split(root: Path, split: str, res: int) -> tuple[np.ndarray, np.ndarray]:
    from edgekit.precision import Preprocess, load_all
    from edgekit.precision.data import scan_folder

    x, y = load_all(scan_folder(root / split), Preprocess(res=res))
    return x, y  # type: ignore[return-value]


def shift_batch(x, max_shift: int, gen):  # -> torch.Tensor
    """Random integer translation per sample with edge replication."""
    import torch
    import torch.nn.functional as F

    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(x[i:i + 256])) for i in range(0, len(x), 256)]).argmax(1).numpy()
    return float((pred == y).mean())


def train(args: argparse.Namespace, data: Path) -> dict:
    import torch
    import torch.nn as nn

    import edgekit

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    xtr, ytr = load_split(data, "train", args.res)
    xte, yte = load_split(data, "test", args.res)
    xtr_t, ytr_t = torch.from_numpy(xtr), torch.from_numpy(ytr)
    model, _ = edgekit.build_model(args.model, alpha=args.alpha, num_classes=10)
    steps = (len(xtr) + args.batch - 1) // args.batch
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps, pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    history = []
    for _epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for s in range(steps):
            idx = order[s * args.batch:(s + 1) * args.batch]
            loss = loss_fn(model(shift_batch(xtr_t[idx], args.shift, gen)), ytr_t[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        history.append(round(total / len(xtr), 4))
        print(f"epoch {len(history):3d}  loss {history[-1]:.4f}", flush=True)
    model.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{args.out.name}.", dir=args.out.parent)
    os.close(fd)
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, args.out)
    return {
        "model": args.model, "alpha": args.alpha, "res": args.res,
        "params": sum(p.numel() for p in model.parameters()), "state_dict_bytes": args.out.stat().st_size,
        "sha256": hashlib.sha256(args.out.read_bytes()).hexdigest(),
        "train_seconds": round(time.perf_counter() - started, 1),
        "epochs": args.epochs, "lr": args.lr, "wd": args.wd, "shift": args.shift, "batch": args.batch,
        "train_acc": accuracy(model, xtr, ytr), "test_acc": accuracy(model, xte, yte), "test_n": int(len(yte)),
        "loss_history": history, "out": str(args.out),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=None, help="where the PNG splits go (default: a temporary folder)")
    p.add_argument("--model", default="mobilenet_v3_small")
    p.add_argument("--alpha", type=float, default=0.35)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--shift", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="append the result as one JSON line here")
    p.add_argument("--write-data", type=Path, default=None, metavar="DIR",
                   help="only write the train/calib/test image folders into DIR, and stop")
    args = p.parse_args()
    from edgekit.precision.digits import write_digits

    if args.write_data is not None:
        for split, folder in write_digits(args.write_data).items():
            print(f"{split:<6} {sum(1 for _ in folder.rglob('*.png')):5d} images in {folder}/")
        return

    if args.out is None:
        args.out = REPO / "tests" / "data" / f"digits_{args.model}_a{args.alpha:g}_r{args.res}.pth"
    with tempfile.TemporaryDirectory(prefix="edgekit-digits-") as tmp:
        data = args.data or Path(tmp)
        write_digits(data)
        result = train(args, data)
    line = json.dumps(result)
    print(line)
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
