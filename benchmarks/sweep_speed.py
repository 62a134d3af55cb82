"""How close does a sweep of every head (and every layer) come to the cost of one forward pass?

For each task, on one machine, with the same features and the paper's probe settings
(:data:`senteval_anatomy.vocab.PAPER_PARAMS`), the script times:

(c) **bare forward**: ``encoder.model(input_ids, attention_mask)`` under ``torch.inference_mode`` over the task's
    unique sentences, in the length-sorted batches that :func:`~senteval_anatomy.encoders.encoding.iter_encode` builds, with
    no hooks. Tokenising and padding are done beforehand and not timed.
**encode()**: :func:`~senteval_anatomy.encoders.encoding.encode` on the same sentences: tokenising and the same forward
    passes with the hooks that pool every head and every layer. It runs part by part in alternation with (c), so
    that a change of load on a shared machine hits both alike; ``encode() / (c) - 1`` is the extraction overhead.
**store**: ``FeatureStore.get`` into an empty temporary cache: ``encode`` plus the writes to disk and checksums.
(b) **batched sweep**: ``sweep(..., harness="builtin")`` with the store now warm, i.e. the probes only (each view's
    ``embed`` step reading the store plus the stacked training of all probes): every head, then every layer.
    ``(b) total = store + heads probes + layers probes`` is what a sweep of one task costs from scratch.
(a) **one head at a time**: ``SE(params, HeadAdapter(encoder, l, h).batcher, .prepare).eval(task)`` per head
    through the engine, store warm (what ``sweep(..., harness="engine")`` does). With ``--heads N`` only a random
    sample of N heads runs and the time is extrapolated to all heads; the printout says so.

It prints one table (times in seconds), the ratios ``(a)/(b)`` (heads probes against heads probes, both on warm
features), ``(b)/(c)`` (whole sweep against the bare forward pass), the extraction overhead, the peak RSS of the
process, and the mean / max ``|Δ|`` of test and dev accuracy between (a) and (b) on the heads that (a) ran.

Usage::

    python benchmarks/sweep_speed.py                                  # Length and SST5 of ../shared/senteval-data
    python benchmarks/sweep_speed.py --tasks Tense --heads 12         # quick look
    python benchmarks/sweep_speed.py --model-size base                # + store_memory.py's BERT-base peak RSS

``--threads`` sets torch's threads for everything (default 1: the batched trainer's own default, see
``DEFAULT_CPU_THREADS`` in ``senteval_anatomy/engine/stacked.py``; on a machine shared with other jobs more threads
than free cores make every small op wait). Times on a shared machine vary from run to run: the load average at the
start and end is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "senteval-data"
STORE_MEMORY = Path(__file__).resolve().parent / "store_memory.py"

TARGETS = {"a_over_b": 50.0, "b_over_c": 2.0, "overhead": 0.15, "mean_dacc": 1.0}


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not POSIX
        return "n/a"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


def bare_batches(encoder: Any, sentences: list[str], batch_size: int) -> list[dict[str, Any]]:
    """The batches ``iter_encode`` feeds the model (same tokens, same longest-first order and padding)."""
    import numpy as np

    from senteval_anatomy.encoders.encoding import pad_token_id, padded_batch, tokenize

    ids, _ = tokenize(encoder, sentences)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    pad_id = pad_token_id(encoder)
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        input_ids, mask = padded_batch(ids, idx, int(lengths[idx].max()), pad_id)
        batches.append({"input_ids": input_ids.to(encoder.device), "attention_mask": mask.to(encoder.device)})
    return batches


def time_bare_forward(encoder: Any, batches: list[dict[str, Any]]) -> float:
    """Seconds of ``encoder.model(**batch)`` over ``batches`` under inference mode, no hooks."""
    import torch

    model = encoder.model
    model.eval()
    with torch.inference_mode():
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for batch in batches:
            model(**batch)
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - t0


def time_forward_and_encode(encoder: Any, sentences: list[str], batch_size: int,
                            slices: int = 64) -> tuple[float, float]:
    """(bare forward, ``features.encode``) seconds over ``sentences``, measured in alternation.

    The length-sorted batches of all sentences (``iter_encode``'s) are cut into up to ``slices`` runs of whole
    batches; each run is fed bare and through ``encode`` back to back (alternating which goes first), so that a
    change in machine load hits both sides alike. A run's sentences are passed longest first, so both sides rebuild
    exactly the batches of the whole set.
    """
    import numpy as np
    import torch

    from senteval_anatomy.encoders.encoding import encode, tokenize

    ids, _ = tokenize(encoder, sentences)
    order = np.argsort(-np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)), kind="stable")
    n_batches = -(-len(order) // batch_size)
    k = max(1, min(slices, n_batches))
    with torch.inference_mode():  # warm-up on the longest batch: first calls allocate and pick kernels
        encoder.model(**bare_batches(encoder, [sentences[i] for i in order[:batch_size]], batch_size)[0])
    t_bare = t_encode = 0.0
    for i in range(k):
        b0, b1 = i * n_batches // k, (i + 1) * n_batches // k
        part = [sentences[j] for j in order[b0 * batch_size : b1 * batch_size]]
        batches = bare_batches(encoder, part, batch_size)
        for side in ((0, 1) if i % 2 == 0 else (1, 0)):
            if side == 0:
                t_bare += time_bare_forward(encoder, batches)
            else:
                t0 = time.perf_counter()
                encode(encoder, part, batch_size=batch_size, progress=False)
                t_encode += time.perf_counter() - t0
    return t_bare, t_encode


def run_base_memory(n: int, threads: int) -> str:
    """Run ``store_memory.py`` (random-weight BERT-base into the store) in its own process; return its peak line."""
    cmd = [sys.executable, str(STORE_MEMORY), "--n", str(n), "--threads", str(threads)]
    print(f"running {' '.join(cmd[1:])} (its own process, so that its peak RSS is its own) ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = proc.stdout.splitlines()
    peak = next((ln for ln in lines if ln.startswith("peak RSS")), None)
    timing = next((ln for ln in lines if ln.startswith("encoding + store")), "")
    verdict = lines[-1] if lines else ""
    if peak is None:
        return f"store_memory.py failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
    return f"{peak.strip()}; {timing.strip()}; {verdict}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="Length,SST5", help="comma-separated tasks (default Length,SST5)")
    ap.add_argument("--task-path", default=str(DEFAULT_DATA),
                    help="SentEval data root (default ../shared/senteval-data)")
    ap.add_argument("--heads", type=int, default=None,
                    help="run (a) on a random sample of N heads and extrapolate (default: every head)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for everything (default 1)")
    ap.add_argument("--batch-size", type=int, default=64, help="sentences per forward pass (the store's default)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the head sample")
    ap.add_argument("--no-layers", action="store_true", help="skip the layers view of (b)")
    ap.add_argument("--model-size", choices=("minilm", "base"), default="minilm",
                    help="'base' also runs benchmarks/store_memory.py: peak RSS of encoding --base-n sentences with "
                         "a random-weight BERT-base (12x12x64) into the store")
    ap.add_argument("--base-n", type=int, default=20_000, help="sentences for --model-size base (default 20000)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from senteval_anatomy.encoders.loading import load_encoder
    from senteval_anatomy.engine import SE
    from senteval_anatomy.engine.tasks import load_task
    from senteval_anatomy.interop.adapters import HeadAdapter
    from senteval_anatomy.store import FeatureStore
    from senteval_anatomy.sweeping import sweep
    from senteval_anatomy.vocab import PAPER_PARAMS

    if args.threads < 1:
        ap.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    task_path = Path(args.task_path)
    if not task_path.is_dir():
        ap.error(f"--task-path {task_path} is not a folder; get SentEval's data or pass --task-path")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    load_start = _load()
    encoder = load_encoder("minilm")
    L, H = encoder.num_layers, encoder.num_heads
    all_heads = [(lay, h) for lay in range(L) for h in range(H)]
    if args.heads is not None and not 1 <= args.heads <= len(all_heads):
        ap.error(f"--heads must be in 1..{len(all_heads)}")
    sample = (sorted(random.Random(args.seed).sample(all_heads, args.heads))
              if args.heads is not None and args.heads < len(all_heads) else all_heads)
    params = dict(PAPER_PARAMS, task_path=str(task_path))

    print(f"machine: {_cpu_name()}, {os.cpu_count()} CPUs; torch {torch.__version__}, {torch.get_num_threads()} "
          f"thread(s); model {encoder.name} L={L} H={H} d={encoder.head_dim}; device {encoder.device}")
    print(f"probe settings (PAPER_PARAMS): {PAPER_PARAMS}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="sweep-speed-") as tmp:
        store = FeatureStore(tmp)
        for name in tasks:
            task = load_task(name, task_path, seed=params["seed"])
            sentences = sorted({" ".join(s) for s in task.samples})
            print(f"\n{name}: {len(sentences)} unique sentences", flush=True)
            t_bare, t_features = time_forward_and_encode(encoder, sentences, args.batch_size)
            print(f"  (c) bare forward      {t_bare:8.1f} s", flush=True)
            print(f"  features.encode()     {t_features:8.1f} s  (alternating with (c), part by part)", flush=True)
            t0 = time.perf_counter()
            store.get(encoder, sentences, batch_size=args.batch_size, progress=False)
            t_encode = time.perf_counter() - t0
            print(f"  encode into store     {t_encode:8.1f} s", flush=True)

            t0 = time.perf_counter()
            b_heads = sweep(encoder, [name], task_path=task_path, views="heads", params=params, store=store,
                            harness="builtin", progress=False)
            t_b_heads = time.perf_counter() - t0
            print(f"  (b) heads probes      {t_b_heads:8.1f} s", flush=True)
            t_b_layers = 0.0
            if not args.no_layers:
                t0 = time.perf_counter()
                sweep(encoder, [name], task_path=task_path, views="layers", params=params, store=store,
                      harness="builtin", progress=False)
                t_b_layers = time.perf_counter() - t0
                print(f"  (b) layers probes     {t_b_layers:8.1f} s", flush=True)

            solo: dict[tuple[int, int], dict[str, Any]] = {}
            t0 = time.perf_counter()
            for lay, h in sample:
                adapter = HeadAdapter(encoder, lay, h, store=store)
                solo[(lay, h)] = SE(dict(params), adapter.batcher, adapter.prepare).eval(name)
            t_a_run = time.perf_counter() - t0
            t_a = t_a_run * len(all_heads) / len(sample)
            print(f"  (a) one at a time     {t_a_run:8.1f} s for {len(sample)} heads"
                  + (f" -> {t_a:.1f} s extrapolated to {len(all_heads)}" if len(sample) < len(all_heads) else ""),
                  flush=True)

            batched = b_heads.set_index(["layer", "head"])
            d_acc = np.array([abs(solo[k]["acc"] - batched.loc[k, "acc"]) for k in sample])
            d_dev = np.array([abs(solo[k]["devacc"] - batched.loc[k, "devacc"]) for k in sample])
            rows.append({
                "task": name, "n": len(sentences), "c": t_bare, "features": t_features, "encode": t_encode,
                "b_heads": t_b_heads,
                "b_layers": t_b_layers, "b_total": t_encode + t_b_heads + t_b_layers, "a": t_a,
                "a_heads": len(sample), "d_acc_mean": float(d_acc.mean()), "d_acc_max": float(d_acc.max()),
                "d_dev_mean": float(d_dev.mean()), "d_dev_max": float(d_dev.max()),
            })
    base_line = run_base_memory(args.base_n, args.threads) if args.model_size == "base" else None

    width = 126
    print("\n" + "=" * width)
    print(f"{'task':<8}{'sents':>6}{'(c) fwd':>9}{'encode()':>9}{'ovh':>6}{'store':>7}{'(b) heads':>10}"
          f"{'(b) layers':>11}{'(b) total':>10}{'(a) heads':>11}{'(a)/(b)':>8}{'(b)/(c)':>8}"
          f"{'|Δacc| mean/max':>16}{'|Δdev| max':>11}")
    for r in rows:
        a_note = "" if r["a_heads"] == L * H else "*"
        print(f"{r['task']:<8}{r['n']:>6}{r['c']:>9.1f}{r['features']:>9.1f}{r['features'] / r['c'] - 1:>+6.0%}"
              f"{r['encode']:>7.1f}{r['b_heads']:>10.1f}{r['b_layers']:>11.1f}{r['b_total']:>10.1f}"
              f"{r['a']:>10.1f}{a_note:1}{r['a'] / r['b_heads']:>8.1f}{r['b_total'] / r['c']:>8.2f}"
              f"{r['d_acc_mean']:>9.2f}/{r['d_acc_max']:<6.2f}{r['d_dev_max']:>11.2f}")
    print("=" * width)
    print("times in s. (c) fwd: bare forward, no hooks, pre-tokenised. encode(): features.encode (tokenise + forward "
          "with the hooks + pooling), timed part by part in\nalternation with (c); ovh = encode() / (c) - 1. store: "
          "FeatureStore.get into an empty cache (encode + disk writes + checksums). (b) heads / layers:\n"
          "sweep(harness='builtin') on the warm store (the task's embed step + the stacked probes). (b) total = "
          "store + (b) heads + (b) layers.\n(a) heads: engine SE + HeadAdapter per head on the warm store"
          + (f"; * = timed on {len(sample)} random heads (seed {args.seed}) and extrapolated to {L * H}; |Δ| over "
             "those heads" if len(sample) < L * H else "; |Δ| over all heads")
          + ". (a)/(b) = (a) heads / (b) heads (both on warm features).")
    print(f"peak RSS of this process: {peak_rss_bytes() / 2**30:.2f} GiB")
    if base_line is not None:
        print(f"BERT-base store (benchmarks/store_memory.py --n {args.base_n}): {base_line}")
    print(f"load average at start: {load_start}; at end: {_load()} ({os.cpu_count()} CPUs)")
    print("\ntargets:")
    for r in rows:
        checks = [
            ("(a)/(b) >= 50", r["a"] / r["b_heads"] >= TARGETS["a_over_b"], f"{r['a'] / r['b_heads']:.1f}"),
            ("(b)/(c) <= 2", r["b_total"] / r["c"] <= TARGETS["b_over_c"], f"{r['b_total'] / r['c']:.2f}"),
            ("hooks+pooling <= 15% over (c)", r["features"] / r["c"] - 1 <= TARGETS["overhead"],
             f"{r['features'] / r['c'] - 1:+.1%}"),
            ("mean |Δacc| <= 1 point", r["d_acc_mean"] <= TARGETS["mean_dacc"], f"{r['d_acc_mean']:.2f}"),
        ]
        print(f"  {r['task']:<8}" + "   ".join(f"{label}: {value} {'met' if ok else 'NOT met'}"
                                              for label, ok, value in checks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
