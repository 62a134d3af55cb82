"""The embedded default data: committed files equal a fresh regeneration, and every label is recomputed here
independently, from the text and from the generator's own trees, with code that does not reuse the generator's
label functions."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from senteval_anatomy.data import grammar
from senteval_anatomy.data.grammar import Tree

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "data" / "default"


@pytest.fixture(scope="module")
def regenerated() -> dict[str, str]:
    return grammar.default_files()


@pytest.fixture(scope="module")
def examples(regenerated) -> dict[str, list[grammar.Example]]:
    """Full-size examples (with trees) of the tasks whose labels need the trees."""
    return {
        t: grammar.probing_examples(t)
        for t in ("Depth", "TopConstituents", "BigramShift", "CoordinationInversion")
    }


def _committed(rel: str) -> str:
    return (DEFAULT / rel).read_bytes().decode("utf-8")


# ------------------------------------------------------------------------------------------ independent helpers


def _words(t: Tree | str) -> list[str]:
    return [t] if isinstance(t, str) else [w for c in t.children for w in _words(c)]


def _depth(t: Tree | str) -> int:
    """Nodes on the longest path from an implicit ROOT down to a word, counted as edges."""

    def h(x: Tree | str) -> int:
        return 0 if isinstance(x, str) else 1 + max(h(c) for c in x.children)

    return h(t) + 1


def _same_sentence(tokens: list[str], words: list[str]) -> bool:
    """Equal up to the capitalisation of the first token (rendering capitalises it)."""
    return [t.lower() for t in tokens] == [w.lower() for w in words]


def _read_probing(rel: str) -> list[tuple[str, str, list[str]]]:
    return [
        (s, lab, sent.split()) for s, lab, sent in (line.split("\t") for line in _committed(rel).splitlines())
    ]


# ------------------------------------------------------------------------------------------ committed == regenerated


def test_committed_files_equal_a_fresh_regeneration(regenerated):
    committed = {p.relative_to(DEFAULT).as_posix() for p in DEFAULT.rglob("*") if p.is_file()}
    assert committed == set(regenerated), "run `python data/make_default.py` and commit data/default"
    for rel, text in regenerated.items():
        assert (DEFAULT / rel).read_bytes() == text.encode("utf-8"), f"{rel} differs from a regeneration"
    size = sum((DEFAULT / rel).stat().st_size for rel in regenerated)
    assert size < 5_000_000  # "a few MB"


def test_generation_is_deterministic_and_seeded():
    small = {"tr": 40, "va": 6, "te": 6}
    a = [e.line for e in grammar.probing_examples("Tense", sizes=small)]
    b = [e.line for e in grammar.probing_examples("Tense", sizes=small)]
    c = [e.line for e in grammar.probing_examples("Tense", seed="another seed", sizes=small)]
    assert a == b and a != c
    assert grammar.trec_lines(sizes={"train": 30, "test": 10}) == grammar.trec_lines(
        sizes={"train": 30, "test": 10}
    )


def test_write_default_is_atomic_per_file_and_prunes_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(grammar, "PROBING_SIZES", {"tr": 30, "va": 6, "te": 6})
    monkeypatch.setattr(
        grammar, "DOWNSTREAM_SIZES", {k: {s: 12 for s in v} for k, v in grammar.DOWNSTREAM_SIZES.items()}
    )
    stale = tmp_path / "probing" / "old_task.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("x")
    written = grammar.write_default(tmp_path)
    assert stale.exists() and len(written) == 23
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temp file left behind
    grammar.write_default(tmp_path, prune=True)
    assert not stale.exists()


# ------------------------------------------------------------------------------------------ probing labels


@pytest.mark.parametrize("task", list(grammar.PROBING_FILES))
def test_probing_files_have_balanced_labels_splits_and_no_duplicates(task):
    rows = _read_probing(f"probing/{grammar.PROBING_FILES[task]}")
    splits = [s for s, _, _ in rows]
    assert splits == ["tr"] * 2000 + ["va"] * 250 + ["te"] * 250  # SentEval order: all tr, then va, then te
    sentences = [" ".join(w) for _, _, w in rows]
    assert len(set(sentences)) == len(sentences)
    for split in ("tr", "va", "te"):
        counts = Counter(lab for s, lab, _ in rows if s == split)
        assert max(counts.values()) - min(counts.values()) <= 1, (task, split, counts)
        assert set(counts) == {lab for s, lab, _ in rows if s == "tr"}


def test_length_labels_from_token_counts():
    bins = [(5, 8), (9, 12), (13, 16), (17, 20), (21, 25), (26, 28)]
    for _, label, words in _read_probing("probing/sentence_length.txt"):
        lo, hi = bins[int(label)]
        assert lo <= len(words) <= hi, (label, words)


def test_word_content_sentences_hold_exactly_one_target_once():
    rows = _read_probing("probing/word_content.txt")
    targets = {lab for _, lab, _ in rows}
    assert len(targets) == 25
    for _, label, words in rows:
        lowered = [w.lower() for w in words]
        assert lowered.count(label) == 1
        assert [w for w in lowered if w in targets] == [label]


def test_depth_labels_from_the_trees(examples):
    exs = examples["Depth"]
    assert [e.line for e in exs] == _committed("probing/tree_depth.txt").splitlines()
    for e in exs:
        assert _same_sentence(e.tokens, _words(e.tree))
        assert int(e.label) == _depth(e.tree)
    assert sorted({int(e.label) for e in exs}) == list(range(5, 12))


def test_top_constituent_labels_from_the_trees(examples):
    exs = examples["TopConstituents"]
    assert [e.line for e in exs] == _committed("probing/top_constituents.txt").splitlines()
    for e in exs:
        assert _same_sentence(e.tokens, _words(e.tree))
        assert e.label == "_".join(c.label for c in e.tree.children if isinstance(c, Tree) and c.label != ",")


def test_bigram_shift_labels_from_text_and_trees(examples):
    exs = examples["BigramShift"]
    assert [e.line for e in exs] == _committed("probing/bigram_shift.txt").splitlines()
    for e in exs:
        orig = [w.lower() for w in _words(e.tree)]
        got = [w.lower() for w in e.tokens]
        if e.label == "O":
            assert got == orig
            continue
        diff = [i for i in range(len(orig)) if orig[i] != got[i]]
        assert len(diff) == 2 and diff[1] == diff[0] + 1, (e.tokens, orig)
        i = diff[0]
        assert got[i] == orig[i + 1] and got[i + 1] == orig[i]
        assert e.tokens[0][:1].isupper() or not e.tokens[0][:1].isalpha()  # still starts like a sentence


def test_coordination_inversion_labels_from_the_trees(examples):
    exs = examples["CoordinationInversion"]
    assert [e.line for e in exs] == _committed("probing/coordination_inversion.txt").splitlines()
    for e in exs:
        s1, comma, cc, s2, dot = e.tree.children
        assert (s1.label, comma.label, cc.label, s2.label, dot.label) == ("S", ",", "CC", "S", ".")
        if e.label == "O":
            expected = _words(s1) + [","] + _words(cc) + _words(s2) + ["."]
        else:
            expected = _words(s2) + [","] + _words(cc) + _words(s1) + ["."]
        assert [w.lower() for w in e.tokens] == [w.lower() for w in expected]


def _main_clause(t: Tree) -> tuple[Tree, Tree]:
    kids = [c for c in t.children if isinstance(c, Tree)]
    np = next(c for c in kids if c.label == "NP")
    vp = next(c for c in kids if c.label == "VP")
    return np, vp


def _head(np: Tree) -> Tree:
    while isinstance(np.children[0], Tree) and np.children[0].label == "NP":
        np = np.children[0]
    return [c for c in np.children if isinstance(c, Tree) and c.label.startswith("NN")][-1]


@pytest.mark.parametrize("task", ["Tense", "SubjNumber", "ObjNumber"])
def test_main_clause_labels_from_the_trees(task):
    for e in grammar.probing_examples(task, sizes={"tr": 150, "va": 20, "te": 20}):
        assert _same_sentence(e.tokens, _words(e.tree))
        np, vp = _main_clause(e.tree)
        if task == "Tense":
            assert {"VBD": "PAST", "VBZ": "PRES", "VBP": "PRES"}[vp.children[0].label] == e.label
        elif task == "SubjNumber":
            assert _head(np).label == e.label
        else:
            obj = next(c for c in vp.children if isinstance(c, Tree) and c.label == "NP")
            assert _head(obj).label == e.label


def test_odd_man_out_changes_one_noun_or_verb_for_one_its_slot_rejects():
    pos_of = {}
    for nouns in grammar.NOUNS.values():
        for n in nouns:
            pos_of[n.sg], pos_of[n.pl] = "NN", "NNS"
    for e in grammar.probing_examples("OddManOut", sizes={"tr": 150, "va": 20, "te": 20}):
        orig = _words(e.tree)
        if e.label == "O":
            assert _same_sentence(e.tokens, orig)
            continue
        diff = [i for i, (a, b) in enumerate(zip(orig, e.tokens, strict=True)) if a.lower() != b.lower()]
        assert len(diff) == 1
        i = diff[0]
        pre = [p for p in _preterminals(e.tree)][i]
        new = e.tokens[i].lower()
        if pre.label in ("NN", "NNS"):
            assert pos_of[new] == pre.label
            new_cls = next(n.cls for ns in grammar.NOUNS.values() for n in ns if new in (n.sg, n.pl))
            assert new_cls not in pre.info["allowed"]
        else:
            verb = next(v for v in grammar.VERBS if new in (v.past, v.s3, v.base))
            assert verb.kind == pre.info["verb"].kind
            assert pre.info["subj"] not in verb.subj or (
                pre.info["obj"] is not None and pre.info["obj"] not in verb.obj
            )


def _preterminals(t: Tree) -> list[Tree]:
    if len(t.children) == 1 and isinstance(t.children[0], str):
        return [t]
    return [p for c in t.children if isinstance(c, Tree) for p in _preterminals(c)]


# ------------------------------------------------------------------------------------------ downstream


def test_downstream_files_load_with_the_engine_and_follow_their_rules():
    from senteval_anatomy.engine import load_task

    sizes = {
        "SST2": (1500, 200, 300),
        "SST5": (1500, 200, 300),
        "TREC": (1500, 300),
        "MRPC": (1200, 400),
        "SICKEntailment": (1200, 150, 450),
    }
    for task, want in sizes.items():
        t = load_task(task, DEFAULT)
        assert tuple(len(rec["y"]) for rec in t.data.values()) == want, task
    sst5 = load_task("SST5", DEFAULT)
    assert Counter(sst5.data["train"]["y"]) == Counter({c: 300 for c in range(5)})
    # SST5: recompute the label of every "<subject> is [not] [modifier] <adjective> ." sentence from the lexicon.
    polarity = {a: p for p, adjs in grammar.SENTIMENT_ADJ.items() for a in adjs}
    factor = {
        "very": Fraction(3, 2),
        "truly": Fraction(3, 2),
        "remarkably": Fraction(3, 2),
        "deeply": Fraction(3, 2),
    }
    factor.update(
        {
            "somewhat": Fraction(1, 2),
            "rather": Fraction(1, 2),
            "mildly": Fraction(1, 2),
            "fairly": Fraction(1, 2),
        }
    )
    checked = 0
    for line in _committed("downstream/SST/fine/sentiment-train").splitlines():
        label, text = line.split(" ", 1)
        words = text.split()
        if words[-1] != "." or "is" not in words or {",", "and", "but"} & set(words) or words[0] == "i":
            continue
        tail = words[len(words) - 1 - words[::-1].index("is") + 1 : -1]
        score = Fraction(polarity[tail[-1]])
        for w in reversed(tail[:-1]):
            score *= Fraction(-1, 2) if w == "not" else factor[w]
        cuts = [Fraction(-7, 4), Fraction(-1, 2), Fraction(1, 2), Fraction(7, 4)]
        expected = sum(score >= c for c in cuts) if score > cuts[0] else 0
        assert int(label) == expected, (line, score)
        checked += 1
    assert checked > 200
    # SICK: entailment pairs never say "no"/"not"/"nobody"; contradictions always do.
    for line in _committed("downstream/SICK/SICK_train.txt").splitlines()[1:]:
        _, a, b, score, judgment = line.split("\t")
        negated = bool({"no", "not", "nobody"} & {w.lower() for w in b.split()})
        assert negated == (judgment == "CONTRADICTION"), line
        assert 1.0 <= float(score) <= 5.0
    # MRPC: paraphrases keep every number; most non-paraphrases change a number, day, place, agent or verb.
    for line in _committed("downstream/MRPC/msr_paraphrase_train.txt").splitlines()[1:]:
        label, _, _, s1, s2 = line.split("\t")
        nums1 = sorted(w for w in s1.split() if w.isdigit())
        nums2 = sorted(w for w in s2.split() if w.isdigit())
        days1 = {w for w in s1.split() if w in grammar.DAYS}
        days2 = {w for w in s2.split() if w in grammar.DAYS}
        if label == "1":
            assert nums1 == nums2 and days1 == days2, line
    assert _committed("downstream/MRPC/msr_paraphrase_test.txt").startswith("\ufeffQuality\t#1 ID")
    trec = _committed("downstream/TREC/train_5500.label")
    assert "'" not in trec and "`" not in trec and trec.isascii()
