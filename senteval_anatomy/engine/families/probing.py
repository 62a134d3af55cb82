"""SentEval's 10 probing tasks (Conneau et al., ACL 2018): one file per task under ``probing/``, lines
``SPLIT<TAB>LABEL<TAB>...<TAB>SENTENCE`` with SPLIT ``tr``/``va``/``te`` (100k/10k/10k lines), ``split`` evaluator.

Each task's label set is fixed by its definition: a label outside it, in any split, is a typo or other data and is
refused (SentEval would silently make it a new class). WordContent's 1000 target words are not listed; its defining
rule is checked instead: the label is a lower-case word that occurs among its sentence's tokens
(case-insensitively), and its probe is always linear.
"""

from __future__ import annotations

from pathlib import Path

from ..readers import natural_key, task_file_lines
from ..spec import DataError, TaskSpec

__all__ = ["SPECS", "PROBING_SPLIT_SIZES", "load_probing", "probing_task"]

#: Lines per split of SentEval's probing files (``tr`` / ``va`` / ``te``).
PROBING_SPLIT_SIZES: dict[str, int] = {"tr": 100_000, "va": 10_000, "te": 10_000}
_TOK2SPLIT = {"tr": "train", "va": "dev", "te": "test"}


def load_probing(root: Path, spec: TaskSpec):
    rel = spec.files[0]
    path = root / rel
    expected = "'SPLIT<TAB>LABEL<TAB>...<TAB>SENTENCE' with SPLIT one of tr, va, te"
    allowed = spec.labels
    if allowed is not None:
        label_rule = f"a {spec.name} label: one of {', '.join(sorted(allowed, key=natural_key))}"
    else:
        label_rule = "a WordContent label: the one lower-case target word that the sentence contains"
    data = {s: {"X": [], "y": [], "line": []} for s in ("train", "dev", "test")}
    for i, line in enumerate(task_file_lines(root, spec, rel), 1):
        fields = line.rstrip().split("\t")
        if len(fields) < 3:
            raise DataError(f"{len(fields)} TAB-separated field(s), need 3", path=path, line=i, expected=expected)
        if fields[0] not in _TOK2SPLIT:
            raise DataError(f"unknown split {fields[0]!r}", path=path, line=i, expected=expected)
        label, tokens = fields[1], fields[-1].split()
        if allowed is not None and label not in allowed:
            raise DataError(f"unknown label {label!r}", path=path, line=i, expected=label_rule,
                            fix="correct the label (SentEval's label sets are fixed per task)")
        if allowed is None and (label != label.lower() or label not in {t.lower() for t in tokens}):
            raise DataError(f"label {label!r} does not occur in the sentence", path=path, line=i,
                            expected=label_rule, fix="correct the label or the sentence")
        rec = data[_TOK2SPLIT[fields[0]]]
        rec["X"].append(tokens)
        rec["y"].append(label)
        rec["line"].append(i)
    for tok, split in _TOK2SPLIT.items():
        if not data[split]["X"]:
            raise DataError(f"no '{tok}' ({split}) lines", path=path, expected=expected)
    labels = sorted(set(data["train"]["y"]))
    tok2label = {lab: k for k, lab in enumerate(labels)}
    for split in ("dev", "test"):
        for lab, lineno in zip(data[split]["y"], data[split]["line"]):
            if lab not in tok2label:
                raise DataError(f"{split} label {lab!r} never occurs in the training ('tr') lines", path=path,
                                line=lineno, expected="every dev/test label among the training labels")
    out = {s: {"X": d["X"], "y": [tok2label[lab] for lab in d["y"]]} for s, d in data.items()}
    samples = out["train"]["X"] + out["dev"]["X"] + out["test"]["X"]
    return out, samples, labels


def probing_task(name: str, file_name: str, group: str, labels: frozenset[str] | None, *,
                 standard_classes: int | None = None, labels_all_used: bool = True,
                 force_linear: bool = False) -> TaskSpec:
    """The spec of a probing task read from ``probing/<file_name>``. SentEval's data uses ``standard_classes``
    classes: by default every label of ``labels`` (``labels_all_used=False``: not pinned down)."""
    rel = f"probing/{file_name}"
    sizes = {_TOK2SPLIT[t]: n for t, n in PROBING_SPLIT_SIZES.items()}
    if standard_classes is None and labels is not None and labels_all_used:
        standard_classes = len(labels)
    return TaskSpec(name, "classification", "split", (rel,), None, "acc", "probing", ("train", "dev", "test"),
                    family="probing", loader=load_probing, group=group, sizes=sizes,
                    file_lines={rel: sum(PROBING_SPLIT_SIZES.values())}, labels=labels,
                    standard_classes=standard_classes, force_linear=force_linear)


_TOP = frozenset({
    "ADVP_NP_VP_.", "CC_ADVP_NP_VP_.", "CC_NP_VP_.", "IN_NP_VP_.", "NP_ADVP_VP_.", "NP_NP_VP_.",
    "NP_PP_.", "NP_VP_.", "PP_NP_VP_.", "RB_NP_VP_.", "SBAR_NP_VP_.", "SBAR_VP_.", "S_CC_S_.",
    "S_NP_VP_.", "S_VP_.", "VBD_NP_VP_.", "VP_.", "WHADVP_SQ_.", "WHNP_SQ_.", "OTHER",
})  # the 19 most frequent top-constituent sequences, and OTHER  # fmt: skip

#: In SentEval's order; groups as in the reference notebooks (paper-reference section 5).
SPECS: tuple[TaskSpec, ...] = (
    probing_task("Length", "sentence_length.txt", "surface", frozenset(str(b) for b in range(6))),  # 6 length bins
    probing_task("WordContent", "word_content.txt", "surface", None, standard_classes=1000, force_linear=True),
    # depths 5-12 bound the labels; how many of them SentEval's file uses is not pinned down by trusted sources
    probing_task("Depth", "tree_depth.txt", "syntactic", frozenset(str(d) for d in range(5, 13)),
                 labels_all_used=False),
    probing_task("TopConstituents", "top_constituents.txt", "syntactic", _TOP),
    probing_task("BigramShift", "bigram_shift.txt", "syntactic", frozenset({"O", "I"})),
    probing_task("Tense", "past_present.txt", "semantic", frozenset({"PAST", "PRES"})),
    probing_task("SubjNumber", "subj_number.txt", "semantic", frozenset({"NN", "NNS"})),
    probing_task("ObjNumber", "obj_number.txt", "semantic", frozenset({"NN", "NNS"})),
    probing_task("OddManOut", "odd_man_out.txt", "semantic", frozenset({"O", "C"})),
    probing_task("CoordinationInversion", "coordination_inversion.txt", "semantic", frozenset({"O", "I"})),
)
