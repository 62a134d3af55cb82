"""Time one evaluation of a real task by each back end of the built-in engine, on the same real features.

The features are the bundled model's last layer (``load_encoder("minilm")`` + ``LayerAdapter``), computed once
through the task's own ``embed`` step (SentEval's batching order); then ``Task.evaluate`` runs with
``usepytorch=False`` (sklearn ``LogisticRegression``) and ``usepytorch=True`` (the PyTorch probe on
``--device``), and the times are printed side by side with their ratio.

    python benchmarks/engine_speed.py                          # SST5 of ../shared/senteval-data
    python benchmarks/engine_speed.py --task TREC --threads 1  # params.probe_threads=1
    python benchmarks/engine_speed.py --preset senteval        # SentEval's default classifier config

Presets of the PyTorch probe: ``anatomy`` (Transformer_Anatomy: rmsprop, batch 256, tenacity 3, epoch_size 2) and
``senteval`` (SentEval's "default / comparable": adam, batch 64, tenacity 5, epoch_size 4).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "senteval-data"

PRESETS = {
    "anatomy": {"nhid": 0, "optim": "rmsprop", "batch_size": 256, "tenacity": 3, "epoch_size": 2, "dropout": 0.0},
    "senteval": {"nhid": 0, "optim": "adam", "batch_size": 64, "tenacity": 5, "epoch_size": 4},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="SST5", help="task name (default SST5)")
    ap.add_argument("--task-path", default=str(DEFAULT_DATA), help="SentEval data root (default ../shared/senteval-data)")
    ap.add_argument("--model", default="minilm", help="encoder for load_encoder (default: bundled minilm)")
    ap.add_argument("--layer", type=int, default=-1, help="block whose output is the feature (default -1: last)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="anatomy", help="PyTorch probe config")
    ap.add_argument("--kfold", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1111)
    ap.add_argument("--device", default="auto", help="device of the PyTorch probe: auto, cpu, cuda ...")
    ap.add_argument("--threads", type=int, default=None,
                    help="params.probe_threads: torch / BLAS threads while probes train (default: library defaults)")
    ap.add_argument("--repeats", type=int, default=1, help="evaluations per back end (the minimum is reported)")
    ap.add_argument("--cache-dir", default=None, help="feature store folder (default: a temporary one)")
    args = ap.parse_args(argv)

    import torch

    from senteval_anatomy import LayerAdapter, load_encoder
    from senteval_anatomy.engine import load_task
    from senteval_anatomy.engine.params import apply_defaults, resolve_device
    from senteval_anatomy.store import FeatureStore

    with tempfile.TemporaryDirectory() as tmp:
        task = load_task(args.task, args.task_path, seed=args.seed)
        if task.spec.kind in ("sts", "relatedness"):
            ap.error(f"{task.name} trains no classifier (usepytorch does not apply); pick a classification task")
        enc = load_encoder(args.model)
        adapter = LayerAdapter(enc, layer=args.layer, store=FeatureStore(args.cache_dir or tmp))
        params = apply_defaults({"task_path": args.task_path, "seed": args.seed, "kfold": args.kfold,
                                 "classifier": dict(PRESETS[args.preset]), "device": args.device,
                                 "probe_threads": args.threads})
        params.current_task = task.name
        t0 = time.perf_counter()
        adapter.prepare(params, task.samples)
        emb = task.embed(params, adapter.batcher)
        t_embed = time.perf_counter() - t0
        split = next(iter(emb.values()))
        X = split["X"] if "X" in split else split["A"]

        rows = []
        for name, usepytorch in (("sklearn", False), ("pytorch", True)):
            params.usepytorch = usepytorch
            times, res = [], None
            for _ in range(max(1, args.repeats)):
                t0 = time.perf_counter()
                res = task.evaluate(emb, params)
                times.append(time.perf_counter() - t0)
            rows.append((name, min(times), res))

    probe_device = resolve_device(args.device)
    print(f"task {task.name} ({task.spec.evaluator}; "
          + ", ".join(f"{k} {len(v['y'] if 'y' in v else v['gold'])}" for k, v in emb.items())
          + f"), features: {args.model} layer {args.layer}, d={X.shape[1]} {X.dtype}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__} with {torch.get_num_threads()} threads"
          + (f", probes limited to {args.threads} (params.probe_threads)" if args.threads else "")
          + f"; PyTorch probe on {probe_device}"
          + (f" ({torch.cuda.get_device_name(probe_device)})" if probe_device.type == "cuda" else ""))
    print(f"classifier preset {args.preset}: {PRESETS[args.preset]}; kfold {args.kfold}; seed {args.seed}")
    print(f"embedding (encode + batcher calls, once): {t_embed:.1f} s")
    print()
    metric = "acc" if "acc" in rows[0][2] else "pearson"
    dev = "devacc" if metric == "acc" else "devpearson"
    print(f"{'back end':<10}{'s / evaluation':>16}{dev:>12}{metric:>10}")
    for name, t, res in rows:
        print(f"{name:<10}{t:>16.2f}{res[dev]:>12.4g}{res[metric]:>10.4g}")
    t_sk, t_pt = rows[0][1], rows[1][1]
    print(f"\nratio pytorch / sklearn: {t_pt / t_sk:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
