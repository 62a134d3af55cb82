"""The paper's fine-tuning grid as one command (``senteval-anatomy reproduce --finetune``), beside its released numbers.

Grid (``examples/glue`` of heartcored98/Transformer_Anatomy at 2100f69): bert-base-uncased and
electra-base-discriminator; MRPC, SST-2, STS-B; the classifier on the last layer and on the layer that probing found
best on dev; seeds 0-4; max_length 128, lr 2e-5, batch 32, 3 epochs.

The released numbers (``reference/jo_myaeng_2020_finetune.csv``, 44 runs, see ``reference/SOURCE.md``) are what the
paper's ``test_results.txt`` files say, but **their "test" is the GLUE dev set** (its ``load_dataset`` maps test to
dev; GLUE's test labels are hidden). Ours are on SentEval's test splits by default (MRPC: the MSR test file; SST2:
SentEval's binary test; STSBenchmark: sts-test), or on GLUE's dev.tsv with ``--glue-dir`` (then comparable in data,
with dev held out of train: the paper, selecting its checkpoint on that same GLUE dev set, had none). The comparison
table says which. ``--dry-run`` prints the runs, an estimate of time and disk, and runs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..engine.registry import get_task
from ..vocab import OneLineParser, atomic_write, names_list, print_error
from .checks import parse_seeds

__all__ = ["PAPER_GRID", "compare_head_deltas", "dry_run", "main", "paper_head_deltas", "paper_numbers",
           "reference_runs"]

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "jo_myaeng_2020_finetune.csv"
HEADS_REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "jo_myaeng_2020_finetuned_heads.csv.gz"

#: The grid: models, (SentEval task, GLUE folder name, GLUE task name in the released files), readouts, seeds.
PAPER_GRID = {
    "models": ("bert-base-uncased", "google/electra-base-discriminator"),
    "tasks": (("MRPC", "MRPC", "mrpc"), ("SST2", "SST-2", "sst-2"), ("STSBenchmark", "STS-B", "sts-b")),
    "reads": ("last", "best-layer"),
    "seeds": (0, 1, 2, 3, 4),
}

#: Parameters (millions) of the grid's models, for the estimates of ``--dry-run``.
_PARAMS_M = {"bert-base-uncased": 110, "google/electra-base-discriminator": 110}
#: Measured on this project's CPU machine (docs/finetune.md, benchmarks/finetune_minilm.py): MiniLM (22.7M
#: parameters), paper preset, MRPC pairs, about 14.5 CPU-seconds (2 threads) per epoch of 64 training + 32 dev pairs,
#: i.e. about 8 training examples per second on 2 otherwise idle cores; scaled by parameter count for other models. A GPU figure is an assumption
#: (about 250 examples/s for a 110M-parameter model at max_length 128, fp32, one current data-centre GPU), not a
#: measurement of this project.
CPU_EXAMPLES_PER_S_MINILM = 8.0
GPU_EXAMPLES_PER_S_110M = 250.0


def _train_size(task: str) -> int:
    """Training examples per epoch, read from the task's spec (its one home): SentEval's train split size."""
    sizes = get_task(task).sizes or {}
    return int(sizes.get("train", 10000))


def reference_runs() -> pd.DataFrame:
    """The 44 released fine-tuning runs (values as stored; ``acc`` etc. are fractions of GLUE **dev**)."""
    return pd.read_csv(REFERENCE)


def paper_numbers() -> pd.DataFrame:
    """Mean and s.d. over seeds of the released runs per experiment × model × task, on our scale (acc in %)."""
    df = reference_runs()
    df["readout"] = df["experiment"].map({"best_layer_snapshot": "best-layer", "last_layer_snapshot": "last",
                                          "snapshot": "last (stock HF head)"})
    df["score"] = [100 * a if t != "sts-b" else p for a, p, t in zip(df["acc"], df["pearson"], df["task"])]
    g = df.groupby(["model", "task", "readout"])["score"]
    out = pd.DataFrame({"paper_mean": g.mean(), "paper_sd": g.std(ddof=1), "paper_n": g.size()}).reset_index()
    out["paper_split"] = "GLUE dev (called test in the paper's files)"
    return out


#: The columns of :func:`compare_head_deltas` (one home: the test and the written table use these).
HEAD_COMPARISON_COLUMNS = ["model", "task", "readout", "layer", "head", "paper_before", "paper_after", "paper_delta",
                           "paper_n_runs", "ours_before", "ours_after", "ours_delta", "ours_n_seeds"]


def _paper_model(name: str) -> str:
    """Our model id as the released files name it (they drop the Hub organisation: ``google/electra-…``)."""
    return str(name).rsplit("/", 1)[-1]


def paper_head_deltas(model: str | None = None, task: str | None = None) -> pd.DataFrame:
    """The released ``head_finetuned`` rows as one row per model × SentEval task × layer × head.

    Each released fine-tuning run (``<GLUE task>/<model>/<exp>/<seed>``) was probed at several checkpoints; its
    **after** score is its last checkpoint's, its **before** score its ``checkpoint-0`` (the pretrained weights under
    the same probe), and Δ = after − before where a run has both for that head (many runs were probed only at their
    end: then Δ is NaN and only ``paper_after`` exists). Scores are test accuracy in % or, for STSBenchmark, test
    Pearson r, as ours. Means over the runs of a model × task (``paper_n_runs``)."""
    ref = pd.read_csv(HEADS_REFERENCE)
    ref["score"] = ref["acc"].where(ref["acc"].notna(), ref["pearson"])
    ref["run"] = ref["checkpoint"].str.rsplit("/", n=1).str[0]
    ref["step"] = ref["checkpoint"].str.extract(r"checkpoint-(\d+)$")[0].astype(int)
    if model is not None:
        ref = ref[ref["model"] == _paper_model(model)]
    if task is not None:
        ref = ref[ref["task"] == task]
    keys = ["model", "task", "layer", "head"]
    last = ref.groupby("run")["step"].transform("max")
    after = ref[ref["step"] == last].set_index(["run", *keys])["score"].rename("after")
    before = ref[ref["step"] == 0].set_index(["run", *keys])["score"].rename("before")
    runs = pd.concat([after, before], axis=1).dropna(subset=["after"])
    runs["delta"] = runs["after"] - runs["before"]
    g = runs.groupby(level=keys)
    out = pd.DataFrame({"paper_before": g["before"].mean(), "paper_after": g["after"].mean(),
                        "paper_delta": g["delta"].mean(), "paper_n_runs": g["after"].size()}).reset_index()
    return out.sort_values(keys, ignore_index=True)


def compare_head_deltas(ours: pd.DataFrame, model: str, task: str,
                        paper: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Our per-head Δ (``head_delta.csv`` of ``--probe-after``: ``readout, layer, head, before_acc, delta_test,
    n_seeds``) beside the released ones of ``model`` on the SentEval probing ``task``, aligned by (layer, head).

    Returns ``(table, rho)``: ``table`` has :data:`HEAD_COMPARISON_COLUMNS` (every head of ours, the paper's columns
    NaN where it released nothing for that head); ``rho`` has per readout the Spearman ρ between the two Δ maps over
    the heads where both exist (``n_heads``; NaN below 3 heads), and the same between the after-scores."""
    from scipy.stats import spearmanr

    if paper is None:
        paper = paper_head_deltas(model, task)
    paper = paper[(paper["model"] == _paper_model(model)) & (paper["task"] == task)]
    mine = pd.DataFrame({"model": model, "task": task, "readout": ours["readout"].astype(str),
                         "layer": ours["layer"].astype(int), "head": ours["head"].astype(int),
                         "ours_before": ours["before_acc"].astype(float),
                         "ours_delta": ours["delta_test"].astype(float),
                         "ours_n_seeds": ours["n_seeds"].astype(int)})
    mine["ours_after"] = mine["ours_before"] + mine["ours_delta"]
    table = mine.merge(paper.drop(columns=["model", "task"]), on=["layer", "head"], how="left")
    table = table[HEAD_COMPARISON_COLUMNS]
    rhos = []
    for readout, g in table.groupby("readout", sort=False):
        both = g.dropna(subset=["paper_delta", "ours_delta"])
        both_after = g.dropna(subset=["paper_after", "ours_after"])

        def rho(a: pd.Series, b: pd.Series) -> float:
            return float(spearmanr(a, b)[0]) if len(a) >= 3 else float("nan")

        rhos.append({"model": model, "task": task, "readout": readout,
                     "n_heads": len(both), "spearman_rho_delta": rho(both["paper_delta"], both["ours_delta"]),
                     "n_heads_after": len(both_after),
                     "spearman_rho_after": rho(both_after["paper_after"], both_after["ours_after"])})
    return table, pd.DataFrame(rhos, columns=["model", "task", "readout", "n_heads", "spearman_rho_delta",
                                              "n_heads_after", "spearman_rho_after"])


def dry_run(models: Sequence[str], tasks: Sequence[str], reads: Sequence[str], seeds: Sequence[int], *,
            gpu: bool, probe_after: bool) -> str:
    """What the grid would run, with estimated time and disk (estimates, see the constants above)."""
    # lazy: start-up time (torch, transformers): reproduce imports this module, and reproduce --help answers without them
    from ..encoders.architectures import UnsupportedModelError
    from ..encoders.loading import config_parameters
    from .training import checkpoint_bytes

    lines = ["run plan (nothing is run with --dry-run):"]
    total_s = 0.0
    peak_disk = 0
    kept = 0
    for m in models:
        if m in _PARAMS_M:
            params, source = _PARAMS_M[m] * 1e6, "the paper's model"
        else:
            try:
                params, source = float(config_parameters(m)), "from its config"
            except UnsupportedModelError:
                params, source = 110e6, "its config is not readable offline: assumed the size of BERT-base"
        lines.append(f"  {m}: about {params / 1e6:.0f}M parameters ({source})")
        for t in tasks:
            n = _train_size(t)
            rate = (GPU_EXAMPLES_PER_S_110M * 110e6 / params) if gpu else CPU_EXAMPLES_PER_S_MINILM * 22.7e6 / params
            per_run = 3 * n / rate
            runs = len(reads) * len(seeds)
            total_s += per_run * runs
            peak_disk = max(peak_disk, checkpoint_bytes(int(params)))
            kept += int(params * 4) * runs if probe_after else 0
            lines.append(f"  {m} {t}: {runs} runs ({', '.join(reads)} x seeds {','.join(map(str, seeds))}), "
                         f"{n} train examples x 3 epochs, about {per_run / 60:.0f} min per run")
    lines.append(f"estimated time: {total_s / 3600:.1f} h on {'one GPU (assumed throughput)' if gpu else 'CPU'} "
                 f"(+ one pretrained sweep per model x task for best-layer)")
    lines.append(f"estimated disk: {peak_disk / 2**30:.1f} GiB of checkpoints at a time (removed when a run "
                 f"finishes)" + (f", {kept / 2**30:.1f} GiB of kept fine-tuned models for --probe-after"
                                 if probe_after else ""))
    lines.append("note: the paper's released 'test' numbers are GLUE dev numbers; see docs/finetune.md")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``reproduce --finetune``: run (or ``--dry-run``) the grid and print ours beside the paper's."""
    # the shared parser: one-line refusals, and a single-value flag given twice is an error (as in every command)
    p = OneLineParser(prog=prog or "senteval-anatomy reproduce --finetune", description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(PAPER_GRID["models"]))
    p.add_argument("--tasks", default=",".join(t for t, _, _ in PAPER_GRID["tasks"]))
    p.add_argument("--reads", default=",".join(PAPER_GRID["reads"]))
    p.add_argument("--seeds", default=",".join(map(str, PAPER_GRID["seeds"])))
    p.add_argument("--task-path", help="SentEval data folder")
    p.add_argument("--glue-dir", help="a folder with GLUE's MRPC/, SST-2/, STS-B/ (train.tsv, dev.tsv): test on GLUE "
                                      "dev as the paper did")
    p.add_argument("--device", default="auto")
    p.add_argument("--probe-after", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--out", default="reproduce-finetune")
    args = p.parse_args(argv)
    try:
        models = names_list(args.models, what="--models", example="bert-base-uncased,minilm")
        tasks = names_list(args.tasks, what="--tasks", example="MRPC,SST2,STSBenchmark")
        reads = names_list(args.reads, what="--reads", example="last,best-layer")
        seeds = parse_seeds(args.seeds, what="--seeds")
        known = {t for t, _, _ in PAPER_GRID["tasks"]}
        bad = [t for t in tasks if t not in known]
        if bad:
            raise ValueError(f"--tasks: {bad} are not in the paper's fine-tuning grid ({', '.join(sorted(known))})")
    except ValueError as exc:
        print_error(exc)
        return 2
    if args.dry_run:
        import torch

        print(dry_run(models, tasks, reads, seeds, gpu=torch.cuda.is_available() or args.device.startswith("cuda"),
                      probe_after=args.probe_after))
        return 0
    # lazy: start-up time (torch, transformers): reproduce imports this module, and reproduce --help answers without them
    from .experiment import finetune

    glue_names = {t: g for t, g, _ in PAPER_GRID["tasks"]}
    glue_tasks = {t: n for t, _, n in PAPER_GRID["tasks"]}
    ours, heads, rhos = [], [], []
    for m in models:
        for t in tasks:
            kw = {"glue": str(Path(args.glue_dir) / glue_names[t]), "select_on": t} if args.glue_dir else {}
            res = finetune(m, None if args.glue_dir else t, task_path=args.task_path, reads=reads, seeds=seeds,
                           out_dir=Path(args.out) / m.replace("/", "_") / t, device=args.device,
                           probe_after=args.probe_after, **kw)
            s = res.summary.assign(model=m, task=glue_tasks[t],
                                   our_split="GLUE dev.tsv" if args.glue_dir else f"SentEval {t} test")
            ours.append(s)
            if res.probe is not None and not res.probe.head_delta.empty:
                h, r = compare_head_deltas(res.probe.head_delta, m, t)
                heads.append(h)
                rhos.append(r)
    table = pd.concat(ours, ignore_index=True).merge(paper_numbers(), on=["model", "task", "readout"], how="left")
    cols = ["model", "task", "readout", "representation", "n_seeds", "test_mean", "test_sd", "our_split",
            "paper_mean", "paper_sd", "paper_n", "paper_split"]
    out = Path(args.out) / "finetune_comparison.csv"
    table[cols].to_csv(out, index=False)
    print(table[cols].to_string(index=False))
    print("The paper's numbers are on GLUE's dev set (its files call it test).")
    if heads:
        write_head_comparison(Path(args.out), pd.concat(heads, ignore_index=True), pd.concat(rhos, ignore_index=True))
    return 0


def write_head_comparison(out: Path, table: pd.DataFrame, rho: pd.DataFrame) -> str:
    """Write ``finetune_head_comparison.csv`` (ours beside the released head_finetuned rows, per head) and
    ``finetune_head_rho.csv`` (Spearman ρ between the two Δ maps) under ``out``; print and return the summary."""
    atomic_write(out / "finetune_head_comparison.csv", lambda p: table.to_csv(p, index=False))
    atomic_write(out / "finetune_head_rho.csv", lambda p: rho.to_csv(p, index=False))
    text = "\n".join([
        "What fine-tuning did to every head, ours beside the released head_finetuned rows (Δ = after − before; "
        "the paper's Δ only where a run was also probed at checkpoint-0):",
        rho.to_string(index=False),
        f"per head: {out / 'finetune_head_comparison.csv'}"])
    print(text)
    return text
