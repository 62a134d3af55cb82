"""Task registry, loaders, batching order and result dicts of the built-in engine, on tiny files written in
SentEval's formats into tmp_path."""

from __future__ import annotations

import copy
import zlib

import numpy as np
import pytest

from senteval_anatomy.engine import (
    DOWNSTREAM_TASKS,
    PROBING_TASKS,
    SE,
    TASK_NAMES,
    DataError,
    dotdict,
    get_task,
    load_task,
    pair_features,
)
from senteval_anatomy.engine.families.sts import STS_DATASETS

FAST_CLF = {"nhid": 0, "optim": "adam", "batch_size": 16, "tenacity": 1, "epoch_size": 1, "max_epoch": 3}

# ------------------------------------------------------------------------------------------------------------------
# Tiny data in SentEval's formats
# ------------------------------------------------------------------------------------------------------------------

POS_WORDS = ["good", "great", "fine", "nice"]
NEG_WORDS = ["bad", "awful", "poor", "sad"]


def _sent(label: int, i: int, n_extra: int = 0) -> str:
    words = POS_WORDS if label else NEG_WORDS
    return " ".join([words[i % 4]] + [f"w{(i * 7 + k) % 13}" for k in range(i % 3 + n_extra)])


def _write(path, text: str, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


def write_binary(root, name, pos, neg):
    files = {"CR": ("custrev.pos", "custrev.neg"), "MR": ("rt-polarity.pos", "rt-polarity.neg"),
             "MPQA": ("mpqa.pos", "mpqa.neg"), "SUBJ": ("subj.objective", "subj.subjective")}[name]
    _write(root / "downstream" / name / files[0], "\n".join(pos) + "\n", "latin-1")
    _write(root / "downstream" / name / files[1], "\n".join(neg) + "\n", "latin-1")


def write_sst(root, fine: bool, splits):
    folder = root / "downstream" / "SST" / ("fine" if fine else "binary")
    for split, rows in splits.items():
        if fine:
            text = "".join(f"{y} {s}\n" for s, y in rows)
        else:
            text = "".join(f"{s} \t{y}\n" for s, y in rows)
        _write(folder / f"sentiment-{split}", text)


def write_trec(root, train, test):
    for fname, rows in (("train_5500.label", train), ("TREC_10.label", test)):
        _write(root / "downstream" / "TREC" / fname, "".join(f"{c}:fine {s}\n" for s, c in rows), "latin-1")


def write_mrpc(root, train, test):
    head = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    for fname, rows in (("msr_paraphrase_train.txt", train), ("msr_paraphrase_test.txt", test)):
        body = "".join(f"{y}\t{k}\t{k + 1000}\t{a}\t{b}\n" for k, (a, b, y) in enumerate(rows))
        _write(root / "downstream" / "MRPC" / fname, head + body)


def write_sick(root, splits):
    head = "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
    names = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}
    for split, rows in splits.items():
        body = "".join(f"{k}\t{a}\t{b}\t{s}\t{lab}\r\n" for k, (a, b, s, lab) in enumerate(rows))
        _write(root / "downstream" / "SICK" / names[split], head + body)


def write_stsb(root, splits):
    for split, rows in splits.items():
        body = "".join(f"main-captions\tMSRvid\t2012test\t{k:04d}\t{s}\t{a}\t{b}\n" for k, (a, b, s) in enumerate(rows))
        _write(root / "downstream" / "STS" / "STSBenchmark" / f"sts-{split}.csv", body)


def write_sts(root, name, datasets):
    folder = root / "downstream" / "STS" / f"{name}-en-test"
    for ds, rows in datasets.items():
        _write(folder / f"STS.input.{ds}.txt", "".join(f"{a}\t{b}\n" for a, b, _ in rows))
        _write(folder / f"STS.gs.{ds}.txt", "".join(f"{g}\n" for _, _, g in rows))


def write_probing(root, name, rows):
    fname = {"Length": "sentence_length.txt", "WordContent": "word_content.txt", "Depth": "tree_depth.txt",
             "TopConstituents": "top_constituents.txt", "BigramShift": "bigram_shift.txt",
             "Tense": "past_present.txt", "SubjNumber": "subj_number.txt", "ObjNumber": "obj_number.txt",
             "OddManOut": "odd_man_out.txt", "CoordinationInversion": "coordination_inversion.txt"}[name]
    _write(root / "probing" / fname, "".join(f"{sp}\t{lab}\t{s}\n" for sp, lab, s in rows))


def _cls_rows(n, offset=0):
    return [(_sent(i % 2, i + offset), i % 2) for i in range(n)]


def _pair_rows(n, offset=0):
    rows = []
    for i in range(n):
        y = i % 2
        a = _sent(1, i + offset)
        b = a if y else _sent(0, i + offset, 1)
        rows.append((a, b, y))
    return rows


def make_all_tasks(root):
    """Tiny, learnable versions of every supported task."""
    for name in ("CR", "MR", "MPQA", "SUBJ"):
        write_binary(root, name, [_sent(1, i) for i in range(24)], [_sent(0, i) for i in range(24)])
    write_sst(root, False, {"train": _cls_rows(40), "dev": _cls_rows(12, 40), "test": _cls_rows(12, 52)})
    fine = lambda n, o: [(_sent(int(i % 5 >= 3), i + o), i % 5) for i in range(n)]  # noqa: E731
    write_sst(root, True, {"train": fine(50, 0), "dev": fine(15, 50), "test": fine(15, 65)})
    coarse = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    write_trec(root, [(_sent(i % 2, i), coarse[i % 6]) for i in range(60)],
               [(_sent(i % 2, i), coarse[i % 6]) for i in range(60, 72)])
    write_mrpc(root, _pair_rows(40), _pair_rows(12, 40))
    sick = lambda n, o: [(a, b, 4.5 if y else 1.5, "ENTAILMENT" if y else "CONTRADICTION")  # noqa: E731
                         for a, b, y in _pair_rows(n, o)]
    write_sick(root, {"train": sick(40, 0), "dev": sick(12, 40), "test": sick(12, 52)})
    stsb = lambda n, o: [(a, b, 4.0 if y else 0.5) for a, b, y in _pair_rows(n, o)]  # noqa: E731
    write_stsb(root, {"train": stsb(40, 0), "dev": stsb(12, 40), "test": stsb(12, 52)})
    for name, datasets in STS_DATASETS.items():
        write_sts(root, name, {d: [(a, b, 4.0 if y else 1.0) for a, b, y in _pair_rows(10, k)]
                               for k, d in enumerate(datasets)})
    for name in PROBING_TASKS:
        # Two labels from the task's fixed label set (WordContent: a target word that the sentence contains).
        labels = sorted(get_task(name).labels or ())[:2] or ["cat", "dog"]
        word = name == "WordContent"
        write_probing(root, name, [("tr" if i < 30 else "va" if i < 40 else "te", labels[i % 2],
                                    _sent(i % 2, i) + (f" {labels[i % 2]}" if word else "")) for i in range(50)])


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


@pytest.fixture(scope="module")
def all_tasks_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("senteval")
    make_all_tasks(root)
    return root


def _vec(word: str, d: int = 8) -> np.ndarray:
    return np.random.RandomState(zlib.crc32(word.encode())).randn(d)


class RecordingBatcher:
    """Bag-of-words batcher (plus a sentiment feature) that records every batch it sees."""

    def __init__(self):
        self.batches: list[list[list[str]]] = []
        self.tasks: list[str] = []

    def __call__(self, params, batch):
        self.batches.append([list(s) for s in batch])
        self.tasks.append(params.current_task)
        out = np.zeros((len(batch), 10))
        for i, s in enumerate(batch):
            for w in s:
                out[i, :8] += _vec(w)
            out[i, 8] = sum(w in POS_WORDS for w in s) - sum(w in NEG_WORDS for w in s)
            out[i, 9] = len(s)
        return out


# ------------------------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------------------------


def test_task_names_are_senteval_order():
    assert len(TASK_NAMES) == 28
    assert TASK_NAMES[:4] == ("CR", "MR", "MPQA", "SUBJ")
    assert TASK_NAMES[-1] == "CoordinationInversion"
    assert len(PROBING_TASKS) == 10
    assert set(DOWNSTREAM_TASKS) | set(PROBING_TASKS) | {"SNLI", "ImageCaptionRetrieval"} == set(TASK_NAMES)
    assert DOWNSTREAM_TASKS == tuple(t for t in TASK_NAMES if t in DOWNSTREAM_TASKS)


@pytest.mark.parametrize("name", DOWNSTREAM_TASKS + PROBING_TASKS)
def test_every_spec_is_consistent(name):
    spec = get_task(name)
    assert spec.name == name
    assert spec.kind in ("classification", "pair_classification", "relatedness", "sts")
    assert spec.evaluator in ("split", "kfold", "innerkfold", "relatedness", "sts")
    assert spec.main_metric == ("pearson" if spec.kind in ("relatedness", "sts") else "acc")
    assert all(f.startswith(spec.folder + "/") for f in spec.files)
    with pytest.raises(AttributeError):
        spec.name = "x"  # frozen


def test_unknown_task_lists_names_and_suggests():
    with pytest.raises(ValueError, match=r"Did you mean 'SST2'") as e:
        get_task("sst2")
    assert "CoordinationInversion" in str(e.value)
    with pytest.raises(ValueError, match=r"Did you mean 'SICKEntailment'"):
        get_task("SICKEntailmnt")


@pytest.mark.parametrize("name", ["SNLI", "ImageCaptionRetrieval"])
def test_unsupported_tasks_say_so(name):
    with pytest.raises(ValueError, match="does not support"):
        get_task(name)


def test_se_checks_all_names_before_running(all_tasks_root):
    batcher = RecordingBatcher()
    se = SE({"task_path": str(all_tasks_root), "usepytorch": False}, batcher)
    with pytest.raises(ValueError, match="Unknown task"):
        se.eval(["Length", "Lenght"])
    assert batcher.batches == []


# ------------------------------------------------------------------------------------------------------------------
# params
# ------------------------------------------------------------------------------------------------------------------


def test_params_defaults_and_dotdict():
    user = {"task_path": "x", "classifier": {}}
    se = SE(user, RecordingBatcher())
    p = se.params
    assert isinstance(p, dotdict)
    assert (p.usepytorch, p.seed, p.batch_size, p.nhid, p.kfold) == (True, 1111, 128, 0, 5)
    assert p.classifier == {"nhid": 0}
    assert p.device == "auto" and p.probe_threads is None
    assert p.no_such_key is None
    assert user == {"task_path": "x", "classifier": {}}  # SentEval copies params once
    with pytest.raises(ValueError, match="nhid"):
        SE({"classifier": {"optim": "adam"}}, RecordingBatcher())
    with pytest.raises(AttributeError):
        p.__array__  # noqa: B018 - dunders are not keys
    assert copy.deepcopy(p) == p


def test_missing_task_path_is_clear():
    with pytest.raises(ValueError, match="task_path"):
        SE({}, RecordingBatcher()).eval("Length")


# ------------------------------------------------------------------------------------------------------------------
# Parsing and label maps
# ------------------------------------------------------------------------------------------------------------------


def test_subj_objective_is_label_1(tmp_path):
    write_binary(tmp_path, "SUBJ", ["it is a film", "a second one"], ["i loved it"])
    task = load_task("SUBJ", tmp_path)
    assert task.data["all"]["y"] == [1, 1, 0]
    assert task.samples == [["it", "is", "a", "film"], ["a", "second", "one"], ["i", "loved", "it"]]


def test_binary_keeps_empty_lines_as_empty_sentences(tmp_path):
    write_binary(tmp_path, "CR", ["good one", "", "nice"], ["bad"])
    batcher = RecordingBatcher()
    task = load_task("CR", tmp_path)
    assert task.samples[1] == []
    task.embed(dotdict(batch_size=2, current_task="CR"), batcher)
    assert batcher.batches[0][0] == []  # sorted first: length 0


def test_binary_latin1(tmp_path):
    _write(tmp_path / "downstream/MR/rt-polarity.pos", "caf\xe9 cr\xe8me\n", "latin-1")
    _write(tmp_path / "downstream/MR/rt-polarity.neg", "bad\n", "latin-1")
    assert load_task("MR", tmp_path).samples[0] == ["caf\xe9", "cr\xe8me"]


def test_trec_coarse_labels(tmp_path):
    write_trec(tmp_path, [("How far ?", "NUM"), ("Who was he ?", "HUM"), ("What is AIDS ?", "ABBR")],
               [("Where is it ?", "LOC")])
    task = load_task("TREC", tmp_path)
    assert task.data["train"]["y"] == [5, 3, 0]
    assert task.data["train"]["X"][0] == ["How", "far", "?"]  # the fine label is dropped
    assert task.data["test"]["y"] == [4]
    assert task.n_classes == 6


def test_sst_formats(tmp_path):
    write_sst(tmp_path, False, {"train": [("a b", 1)], "dev": [("c", 0)], "test": [("d e f", 1)]})
    write_sst(tmp_path, True, {"train": [("a b", 4)], "dev": [("c", 0)], "test": [("d", 2)]})
    t2, t5 = load_task("SST2", tmp_path), load_task("SST5", tmp_path)
    assert t2.data["train"] == {"X": [["a", "b"]], "y": [1]}
    assert t2.samples == [["a", "b"], ["c"], ["d", "e", "f"]]
    assert t5.data["train"] == {"X": [["a", "b"]], "y": [4]}
    assert t5.n_classes == 5


def test_sick_labels_and_scores(tmp_path):
    rows = [("a b", "c", 4.5, "ENTAILMENT"), ("d", "e f", 1.0, "CONTRADICTION"), ("g", "h", 3.2, "NEUTRAL")]
    write_sick(tmp_path, {"train": rows, "dev": rows[:1], "test": rows[1:]})
    te, tr = load_task("SICKEntailment", tmp_path), load_task("SICKRelatedness", tmp_path)
    assert te.data["train"]["y"] == [2, 0, 1]
    assert tr.data["train"]["y"] == [4.5, 1.0, 3.2]
    assert te.data["train"]["A"][0] == ["a", "b"] and te.data["train"]["B"][1] == ["e", "f"]
    # prepare order: train A, train B, dev A, dev B, test A, test B
    assert te.samples == [["a", "b"], ["d"], ["g"], ["c"], ["e", "f"], ["h"], ["a", "b"], ["c"], ["d"], ["g"],
                          ["e", "f"], ["h"]]


def test_mrpc_header_dropped_and_pair_order(tmp_path):
    write_mrpc(tmp_path, [("a b", "c", 1), ("d", "e", 0)], [("f", "g h", 1)])
    task = load_task("MRPC", tmp_path)
    assert task.data["train"] == {"A": [["a", "b"], ["d"]], "B": [["c"], ["e"]], "y": [1, 0]}
    assert task.samples == [["a", "b"], ["d"], ["c"], ["e"], ["f"], ["g", "h"]]


def test_probing_labels_sorted_from_train(tmp_path):
    rows = [("tr", "5", "x y"), ("tr", "10", "z"), ("tr", "7", "u v w"), ("va", "7", "q"), ("te", "10", "r")]
    write_probing(tmp_path, "Depth", rows)
    task = load_task("Depth", tmp_path)
    assert task.label_names == ["10", "5", "7"]  # sorted as strings, as SentEval does
    assert task.data["train"]["y"] == [1, 0, 2]
    assert task.data["dev"]["y"] == [2] and task.data["test"]["y"] == [0]
    assert task.n_classes == 3
    assert task.samples == [["x", "y"], ["z"], ["u", "v", "w"], ["q"], ["r"]]


def test_sts_drops_empty_gold_and_sorts_at_load(tmp_path):
    write_sts(tmp_path, "STS13", {"FNWN": [("a b c", "d", 1.0), ("e", "f g", ""), ("h", "i", 3.5)],
                                  "headlines": [("j", "k", 2.0)], "OnWN": [("l m", "n", 0.0)]})
    task = load_task("STS13", tmp_path)
    assert task.data["FNWN"] == {"A": [["h"], ["a", "b", "c"]], "B": [["i"], ["d"]], "gold": [3.5, 1.0]}
    assert task.samples[:4] == [["h"], ["a", "b", "c"], ["i"], ["d"]]


# ------------------------------------------------------------------------------------------------------------------
# Batching order seen by the batcher
# ------------------------------------------------------------------------------------------------------------------


def test_single_sentence_sort_and_batches(tmp_path):
    train = [("c c c", 1), ("a", 1), ("b b", 0), ("d", 0), ("e e", 1)]
    write_sst(tmp_path, False, {"train": train, "dev": [("x y", 0), ("z", 1)], "test": [("t", 1)]})
    batcher = RecordingBatcher()
    task = load_task("SST2", tmp_path)
    emb = task.embed(dotdict(batch_size=2, current_task="SST2"), batcher)
    # sorted by (length, label), stable; batches of 2; train -> dev -> test
    assert batcher.batches == [[["d"], ["a"]], [["b", "b"], ["e", "e"]], [["c", "c", "c"]],
                               [["z"], ["x", "y"]], [["t"]]]
    assert emb["train"]["y"].tolist() == [0, 1, 0, 1, 1]
    assert emb["train"]["X"].shape == (5, 10)
    assert set(emb) == {"train", "dev", "test"}


def test_pair_task_embeds_all_a_then_all_b(tmp_path):
    write_mrpc(tmp_path, [("a a", "b", 1), ("c", "d d d", 0), ("e", "f", 1)], [("g", "h", 0)])
    batcher = RecordingBatcher()
    emb = load_task("MRPC", tmp_path).embed(dotdict(batch_size=2), batcher)
    # sort key (len A, len B, label): (c,ddd,0)? no: (1,3,0) vs (e,f,1)=(1,1,1) -> e first, then c, then a a
    assert batcher.batches == [[["e"], ["c"]], [["a", "a"]], [["f"], ["d", "d", "d"]], [["b"]], [["g"]], [["h"]]]
    assert emb["train"]["y"].tolist() == [1, 0, 1]
    assert set(emb["train"]) == {"A", "B", "y"}


def test_sts_alternates_a_and_b(tmp_path):
    write_sts(tmp_path, "STS13", {"FNWN": [("a", "b", 1.0), ("c", "d", 2.0), ("e", "f", 3.0)],
                                  "headlines": [("g", "h", 2.0)], "OnWN": [("i", "j", 0.0)]})
    batcher = RecordingBatcher()
    emb = load_task("STS13", tmp_path).embed(dotdict(batch_size=2), batcher)
    assert batcher.batches == [[["a"], ["c"]], [["b"], ["d"]], [["e"]], [["f"]], [["g"]], [["h"]], [["i"]], [["j"]]]
    assert emb["FNWN"]["gold"].tolist() == [1.0, 2.0, 3.0]


def test_pair_features_order():
    u, v = np.array([[1.0, -2.0]]), np.array([[3.0, 4.0]])
    np.testing.assert_array_equal(pair_features(u, v), [[2.0, 6.0, 3.0, -8.0]])


def test_batcher_output_checks(tmp_path):
    write_sst(tmp_path, False, {"train": [("a", 1), ("b", 0)], "dev": [("c", 0)], "test": [("d", 1)]})
    task = load_task("SST2", tmp_path)
    with pytest.raises(ValueError, match="one row per sentence"):
        task.embed(dotdict(batch_size=8), lambda p, b: np.zeros((len(b) + 1, 3)))
    sizes = iter([3, 4, 4])
    with pytest.raises(ValueError, match="same for every batch"):
        task.embed(dotdict(batch_size=8), lambda p, b: np.zeros((len(b), next(sizes))))
    torch = pytest.importorskip("torch")
    emb = task.embed(dotdict(batch_size=8), lambda p, b: torch.arange(3.0).repeat(len(b), 1))
    np.testing.assert_array_equal(emb["train"]["X"], [[0.0, 1.0, 2.0]] * 2)


# ------------------------------------------------------------------------------------------------------------------
# SE end to end: prepare, current_task, result keys and rounding
# ------------------------------------------------------------------------------------------------------------------

EXPECTED_KEYS = {
    "innerkfold": ["devacc", "acc", "ndev", "ntest"],
    "split": ["devacc", "acc", "ndev", "ntest"],
    "kfold": ["devacc", "acc", "ndev", "ntest"],
    "relatedness": ["devpearson", "pearson", "spearman", "mse", "yhat", "ndev", "ntest"],
}


def _check_result(name, r, n):
    spec = get_task(name)
    if spec.kind == "sts":
        assert list(r) == list(STS_DATASETS[name]) + ["all"]
        for d in STS_DATASETS[name]:
            assert set(r[d]) == {"pearson", "spearman", "nsamples"}
            assert len(r[d]["pearson"]) == 2 and r[d]["pearson"][0] == r[d]["pearson"].statistic
        assert set(r["all"]) == {"pearson", "spearman"} and set(r["all"]["pearson"]) == {"mean", "wmean"}
        assert r["all"]["pearson"]["mean"] > 0.5
        return
    keys = EXPECTED_KEYS[spec.evaluator] if name != "MRPC" else ["devacc", "acc", "f1", "ndev", "ntest"]
    assert list(r) == keys
    if spec.kind == "relatedness":
        assert isinstance(r["yhat"], np.ndarray) and r["yhat"].shape == (r["ntest"],)
        assert -1 <= r["pearson"] <= 1
        return
    for k in ("devacc", "acc") + (("f1",) if name == "MRPC" else ()):
        assert isinstance(r[k], float) and round(r[k], 2) == r[k] and 0 <= r[k] <= 100


# STS12-16 train no probe, so they have no PyTorch cell.
SE_CELLS = [(name, usepytorch) for name in DOWNSTREAM_TASKS + ("Tense", "WordContent")
            for usepytorch in (False, True) if not (usepytorch and get_task(name).kind == "sts")]


@pytest.mark.parametrize("name,usepytorch", SE_CELLS,
                         ids=[f"{n}-{'pytorch' if u else 'sklearn'}" for n, u in SE_CELLS])
def test_se_eval_every_task(all_tasks_root, name, usepytorch):
    calls = []

    def prepare(params, samples):
        calls.append((params.current_task, [list(s) for s in samples]))

    batcher = RecordingBatcher()
    params = {"task_path": str(all_tasks_root), "usepytorch": usepytorch, "kfold": 2, "batch_size": 16,
              "classifier": dict(FAST_CLF, nhid=4 if name == "WordContent" else 0), "device": "cpu"}
    se = SE(params, batcher, prepare)
    r = se.eval(name)
    assert len(calls) == 1 and calls[0][0] == name
    assert calls[0][1] == load_task(name, all_tasks_root).samples
    assert set(batcher.tasks) == {name}
    seen = [s for b in batcher.batches for s in b]
    assert sorted(map(tuple, seen)) == sorted(map(tuple, calls[0][1]))  # every sentence embedded exactly once
    assert max(len(b) for b in batcher.batches) <= 16
    _check_result(name, r, len(seen))
    if name == "WordContent":
        assert se.params.classifier["nhid"] == 4  # forced to 0 on a copy only


def test_se_eval_list_and_learnable(all_tasks_root):
    params = {"task_path": str(all_tasks_root), "usepytorch": False, "kfold": 2}
    se = SE(params, RecordingBatcher())
    res = se.eval(["SST2", "CR", "MRPC"])
    assert list(res) == ["SST2", "CR", "MRPC"]
    assert res["SST2"]["acc"] >= 90 and res["CR"]["acc"] >= 90 and res["MRPC"]["acc"] >= 90
    assert res["CR"]["ndev"] == res["CR"]["ntest"] == 48
    assert res["MRPC"]["ndev"] == 40 and res["MRPC"]["ntest"] == 12


def test_sts_similarity_param(all_tasks_root):
    calls = []

    def sim(u, v):
        calls.append(1)
        return -float(np.abs(u - v).sum())

    r = SE({"task_path": str(all_tasks_root), "similarity": sim}, RecordingBatcher()).eval("STS12")
    assert len(calls) == sum(r[d]["nsamples"] for d in STS_DATASETS["STS12"])


def test_evaluation_seed_rule():
    """``Task.evaluate`` and the batched ``evaluate_many`` both take the seed by this rule: ``params['seed']`` when
    set, else the seed the task was loaded with; the other keys get SentEval's defaults."""
    from senteval_anatomy.engine.protocol import evaluation_params

    assert evaluation_params({"seed": 9}, 5)[1] == 9
    assert evaluation_params({"seed": None}, 5)[1] == 5
    p, seed = evaluation_params(None, 5)
    assert seed == 5 and (p.usepytorch, p.kfold, p.classifier) == (True, 5, {"nhid": 0})


def test_evaluate_seed_comes_from_params_or_load(all_tasks_root):
    task = load_task("SST2", all_tasks_root, seed=5)
    rs = np.random.RandomState(0)  # weak features, so that the probe's seed shows in the scores
    emb = {s: {"X": rs.randn(n, 6), "y": np.arange(n) % 2} for s, n in (("train", 60), ("dev", 40), ("test", 40))}
    params = {"usepytorch": True, "classifier": FAST_CLF, "device": "cpu"}
    from_load = task.evaluate(emb, params)
    assert from_load == task.evaluate(emb, dict(params, seed=5))
    assert from_load != task.evaluate(emb, dict(params, seed=6))


# ------------------------------------------------------------------------------------------------------------------
# Data errors
# ------------------------------------------------------------------------------------------------------------------


def test_missing_folder_names_files_and_command(tmp_path):
    with pytest.raises(DataError) as e:
        load_task("SST5", tmp_path)
    msg = str(e.value)
    assert "sentiment-train" in msg and "sentiment-dev" in msg
    assert "python -m senteval_anatomy.data download --tasks SST5" in msg
    assert e.value.path.endswith("downstream/SST/fine")


def test_missing_file_names_path(tmp_path):
    write_sst(tmp_path, False, {"train": [("a", 1)], "dev": [("b", 0)]})
    with pytest.raises(DataError, match="sentiment-test") as e:
        load_task("SST2", tmp_path)
    assert e.value.path.endswith("sentiment-test") and e.value.line is None
    assert "download --tasks SST2" in str(e.value)


def _bad(root, name, relpath, text, good=None):
    if good:
        good(root)
    _write(root / relpath, text)
    return name


def _probing_ok(lines):
    return "tr\tPAST\tx y\ntr\tPRES\tz\nva\tPAST\tq\nte\tPRES\tr\n" + lines


MALFORMED = [
    # (task, file, content, expected line, message fragment)
    ("SST2", "downstream/SST/binary/sentiment-train", "good film\t1\nno label here\n", 2, "TAB"),
    ("SST2", "downstream/SST/binary/sentiment-train", "good film\t1\nbad film\t2\n", 2, "not a SST2 label"),
    ("SST5", "downstream/SST/fine/sentiment-train", "4 great\nx terrible\n", 2, "not an integer"),
    ("TREC", "downstream/TREC/train_5500.label", "NUM:dist How far ?\nWHAT:x Why ?\n", 2, "unknown TREC class"),
    ("TREC", "downstream/TREC/train_5500.label", "NUM:dist How far ?\nno colon\n", 2, "':'"),
    ("MRPC", "downstream/MRPC/msr_paraphrase_train.txt", "Quality\t#1\t#2\tA\tB\n1\t1\t2\ta\tb\n2\t1\t2\ta\tb\n", 3,
     "not 0 or 1"),
    ("MRPC", "downstream/MRPC/msr_paraphrase_train.txt", "1\t1\t2\ta\tb\n0\t1\t2\ta\tb\n", 1, "header"),
    ("SICKEntailment", "downstream/SICK/SICK_train.txt", "h\th\th\th\th\n1\ta\tb\t3.0\tYES\n", 2,
     "unknown entailment label"),
    ("SICKRelatedness", "downstream/SICK/SICK_train.txt", "h\th\th\th\th\n1\ta\tb\thigh\tNEUTRAL\n", 2,
     "not a number"),
    ("STSBenchmark", "downstream/STS/STSBenchmark/sts-dev.csv", "g\tf\ty\t1\t7.5\ta\tb\n", 1, "outside"),
    ("STSBenchmark", "downstream/STS/STSBenchmark/sts-dev.csv", "g\tf\ty\t1\t2.5\ta\n", 1, "need 7"),
    ("Tense", "probing/past_present.txt", _probing_ok("te\tFUTURE\tnew label\n"), 5, "unknown label"),
    ("Depth", "probing/tree_depth.txt", "tr\t5\tx y\ntr\t6\tz\nva\t5\tq\nte\t7\tr\n", 4, "never occurs"),
    ("Tense", "probing/past_present.txt", _probing_ok("dv\tPAST\tbad split\n"), 5, "unknown split"),
    ("Tense", "probing/past_present.txt", _probing_ok("tr\tno sentence\n"), 5, "need 3"),
    ("SST5", "downstream/SST/fine/sentiment-dev", "", None, "empty"),
]


@pytest.mark.parametrize("name,rel,text,line,fragment", MALFORMED, ids=[f"{m[0]}-{m[4]}" for m in MALFORMED])
def test_malformed_files_raise_data_error(all_tasks_root, tmp_path, name, rel, text, line, fragment):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(all_tasks_root, root)
    _write(root / rel, text)
    with pytest.raises(DataError) as e:
        load_task(name, root)
    err = e.value
    assert isinstance(err, ValueError)
    assert err.path == str(root / rel)
    assert err.line == line
    assert fragment in str(err)
    if line is not None:
        assert f"{root / rel}:{line}:" in str(err)
    assert "expected" in str(err)


def test_sts_gold_count_mismatch(tmp_path):
    write_sts(tmp_path, "STS13", {d: [("a", "b", 1.0)] for d in STS_DATASETS["STS13"]})
    _write(tmp_path / "downstream/STS/STS13-en-test/STS.gs.FNWN.txt", "1.0\n2.0\n")
    with pytest.raises(DataError, match="2 gold lines for 1 sentence pairs"):
        load_task("STS13", tmp_path)


def test_bad_utf8_names_line(tmp_path):
    write_sst(tmp_path, True, {"train": [("a", 1)], "dev": [("b", 0)], "test": [("c", 4)]})
    (tmp_path / "downstream/SST/fine/sentiment-dev").write_bytes(b"1 fine\n2 caf\xe9\n")
    with pytest.raises(DataError, match="not valid utf-8") as e:
        load_task("SST5", tmp_path)
    assert e.value.line == 2


def test_data_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(DataError("bad label", path="/d/f.txt", line=3, expected="0 or 1", fix="edit")))
    assert (err.path, err.line, err.expected, err.fix) == ("/d/f.txt", 3, "0 or 1", "edit")
    assert str(err).startswith("/d/f.txt:3: bad label")


def test_probe_threads_limits_and_restores(all_tasks_root):
    import torch

    task = load_task("SST2", all_tasks_root)
    emb = task.embed(dotdict(batch_size=8), RecordingBatcher())
    params = {"usepytorch": True, "classifier": FAST_CLF, "device": "cpu"}
    seen = []
    real_fit = __import__("senteval_anatomy.engine.probes", fromlist=["TorchProbe"]).TorchProbe.fit

    def spy(self, *a, **k):
        seen.append(torch.get_num_threads())
        return real_fit(self, *a, **k)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("senteval_anatomy.engine.probes.TorchProbe.fit", spy)
            limited = task.evaluate(emb, dict(params, probe_threads=1))
        assert set(seen) == {1} and torch.get_num_threads() == 2
        assert limited == task.evaluate(emb, params)
        with pytest.raises(ValueError, match="probe_threads"):
            task.evaluate(emb, dict(params, probe_threads=0))
    finally:
        torch.set_num_threads(before)
