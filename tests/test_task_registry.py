"""The task registry: every per-task fact lives on one ``TaskSpec`` in its family file, and adding a task is one
family file (plus one download recipe).

* every fact equals what the old name-keyed tables held (``engine.tasks``, ``data.check``, ``data.sources``,
  ``vocab``), so moving them changed no number;
* the lists other modules derive (file line counts, standard sizes, groups, downloader datasets) follow the specs;
* a fifth binary task, registered at run time with its own download recipe and real files, downloads, checks and
  runs through ``SE`` with nothing else edited.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import pytest

from senteval_anatomy.engine import SE, get_task, load_task, register, registry
from senteval_anatomy.engine.families import FAMILIES
from senteval_anatomy.engine.families.binary import binary_task
from senteval_anatomy.engine.families.sts import STS_DATASETS
from senteval_anatomy.engine.spec import TaskSpec

sources = importlib.import_module("senteval_anatomy.data.sources")
check_mod = importlib.import_module("senteval_anatomy.data.check")
download_mod = importlib.import_module("senteval_anatomy.data.download")

PACKAGE = Path(__file__).resolve().parents[1] / "senteval_anatomy"

#: The old engine.tasks._SPECS: (kind, evaluator, files, n_classes, main_metric, folder, splits).
OLD_SPECS = {
    'CR': ('classification', 'innerkfold', ('downstream/CR/custrev.pos', 'downstream/CR/custrev.neg'), 2, 'acc',
          'downstream/CR', ('all',)),
    'MR': ('classification', 'innerkfold', ('downstream/MR/rt-polarity.pos', 'downstream/MR/rt-polarity.neg'),
          2, 'acc', 'downstream/MR', ('all',)),
    'MPQA': ('classification', 'innerkfold', ('downstream/MPQA/mpqa.pos', 'downstream/MPQA/mpqa.neg'), 2, 'acc',
            'downstream/MPQA', ('all',)),
    'SUBJ': ('classification', 'innerkfold',
            ('downstream/SUBJ/subj.objective', 'downstream/SUBJ/subj.subjective'), 2, 'acc', 'downstream/SUBJ',
            ('all',)),
    'SST2': ('classification', 'split',
            ('downstream/SST/binary/sentiment-train', 'downstream/SST/binary/sentiment-dev',
            'downstream/SST/binary/sentiment-test'),
            2, 'acc', 'downstream/SST/binary', ('train', 'dev', 'test')),
    'SST5': ('classification', 'split',
            ('downstream/SST/fine/sentiment-train', 'downstream/SST/fine/sentiment-dev',
            'downstream/SST/fine/sentiment-test'),
            5, 'acc', 'downstream/SST/fine', ('train', 'dev', 'test')),
    'TREC': ('classification', 'kfold', ('downstream/TREC/train_5500.label', 'downstream/TREC/TREC_10.label'),
            6, 'acc', 'downstream/TREC', ('train', 'test')),
    'MRPC': ('pair_classification', 'kfold',
            ('downstream/MRPC/msr_paraphrase_train.txt', 'downstream/MRPC/msr_paraphrase_test.txt'), 2, 'acc',
            'downstream/MRPC', ('train', 'test')),
    'SICKRelatedness': ('relatedness', 'relatedness',
                       ('downstream/SICK/SICK_train.txt', 'downstream/SICK/SICK_trial.txt',
                       'downstream/SICK/SICK_test_annotated.txt'),
                       None, 'pearson', 'downstream/SICK', ('train', 'dev', 'test')),
    'SICKEntailment': ('pair_classification', 'split',
                      ('downstream/SICK/SICK_train.txt', 'downstream/SICK/SICK_trial.txt',
                      'downstream/SICK/SICK_test_annotated.txt'),
                      3, 'acc', 'downstream/SICK', ('train', 'dev', 'test')),
    'STSBenchmark': ('relatedness', 'relatedness',
                    ('downstream/STS/STSBenchmark/sts-train.csv', 'downstream/STS/STSBenchmark/sts-dev.csv',
                    'downstream/STS/STSBenchmark/sts-test.csv'),
                    None, 'pearson', 'downstream/STS/STSBenchmark', ('train', 'dev', 'test')),
    'STS12': ('sts', 'sts',
             ('downstream/STS/STS12-en-test/STS.input.MSRpar.txt',
             'downstream/STS/STS12-en-test/STS.gs.MSRpar.txt',
             'downstream/STS/STS12-en-test/STS.input.MSRvid.txt',
             'downstream/STS/STS12-en-test/STS.gs.MSRvid.txt',
             'downstream/STS/STS12-en-test/STS.input.SMTeuroparl.txt',
             'downstream/STS/STS12-en-test/STS.gs.SMTeuroparl.txt',
             'downstream/STS/STS12-en-test/STS.input.surprise.OnWN.txt',
             'downstream/STS/STS12-en-test/STS.gs.surprise.OnWN.txt',
             'downstream/STS/STS12-en-test/STS.input.surprise.SMTnews.txt',
             'downstream/STS/STS12-en-test/STS.gs.surprise.SMTnews.txt'),
             None, 'pearson', 'downstream/STS/STS12-en-test',
             ('MSRpar', 'MSRvid', 'SMTeuroparl', 'surprise.OnWN', 'surprise.SMTnews')),
    'STS13': ('sts', 'sts',
             ('downstream/STS/STS13-en-test/STS.input.FNWN.txt',
             'downstream/STS/STS13-en-test/STS.gs.FNWN.txt',
             'downstream/STS/STS13-en-test/STS.input.headlines.txt',
             'downstream/STS/STS13-en-test/STS.gs.headlines.txt',
             'downstream/STS/STS13-en-test/STS.input.OnWN.txt',
             'downstream/STS/STS13-en-test/STS.gs.OnWN.txt'),
             None, 'pearson', 'downstream/STS/STS13-en-test', ('FNWN', 'headlines', 'OnWN')),
    'STS14': ('sts', 'sts',
             ('downstream/STS/STS14-en-test/STS.input.deft-forum.txt',
             'downstream/STS/STS14-en-test/STS.gs.deft-forum.txt',
             'downstream/STS/STS14-en-test/STS.input.deft-news.txt',
             'downstream/STS/STS14-en-test/STS.gs.deft-news.txt',
             'downstream/STS/STS14-en-test/STS.input.headlines.txt',
             'downstream/STS/STS14-en-test/STS.gs.headlines.txt',
             'downstream/STS/STS14-en-test/STS.input.images.txt',
             'downstream/STS/STS14-en-test/STS.gs.images.txt',
             'downstream/STS/STS14-en-test/STS.input.OnWN.txt',
             'downstream/STS/STS14-en-test/STS.gs.OnWN.txt',
             'downstream/STS/STS14-en-test/STS.input.tweet-news.txt',
             'downstream/STS/STS14-en-test/STS.gs.tweet-news.txt'),
             None, 'pearson', 'downstream/STS/STS14-en-test',
             ('deft-forum', 'deft-news', 'headlines', 'images', 'OnWN', 'tweet-news')),
    'STS15': ('sts', 'sts',
             ('downstream/STS/STS15-en-test/STS.input.answers-forums.txt',
             'downstream/STS/STS15-en-test/STS.gs.answers-forums.txt',
             'downstream/STS/STS15-en-test/STS.input.answers-students.txt',
             'downstream/STS/STS15-en-test/STS.gs.answers-students.txt',
             'downstream/STS/STS15-en-test/STS.input.belief.txt',
             'downstream/STS/STS15-en-test/STS.gs.belief.txt',
             'downstream/STS/STS15-en-test/STS.input.headlines.txt',
             'downstream/STS/STS15-en-test/STS.gs.headlines.txt',
             'downstream/STS/STS15-en-test/STS.input.images.txt',
             'downstream/STS/STS15-en-test/STS.gs.images.txt'),
             None, 'pearson', 'downstream/STS/STS15-en-test',
             ('answers-forums', 'answers-students', 'belief', 'headlines', 'images')),
    'STS16': ('sts', 'sts',
             ('downstream/STS/STS16-en-test/STS.input.answer-answer.txt',
             'downstream/STS/STS16-en-test/STS.gs.answer-answer.txt',
             'downstream/STS/STS16-en-test/STS.input.headlines.txt',
             'downstream/STS/STS16-en-test/STS.gs.headlines.txt',
             'downstream/STS/STS16-en-test/STS.input.plagiarism.txt',
             'downstream/STS/STS16-en-test/STS.gs.plagiarism.txt',
             'downstream/STS/STS16-en-test/STS.input.postediting.txt',
             'downstream/STS/STS16-en-test/STS.gs.postediting.txt',
             'downstream/STS/STS16-en-test/STS.input.question-question.txt',
             'downstream/STS/STS16-en-test/STS.gs.question-question.txt'),
             None, 'pearson', 'downstream/STS/STS16-en-test',
             ('answer-answer', 'headlines', 'plagiarism', 'postediting', 'question-question')),
    'Length': ('classification', 'split', ('probing/sentence_length.txt',), None, 'acc', 'probing',
              ('train', 'dev', 'test')),
    'WordContent': ('classification', 'split', ('probing/word_content.txt',), None, 'acc', 'probing',
                   ('train', 'dev', 'test')),
    'Depth': ('classification', 'split', ('probing/tree_depth.txt',), None, 'acc', 'probing',
             ('train', 'dev', 'test')),
    'TopConstituents': ('classification', 'split', ('probing/top_constituents.txt',), None, 'acc', 'probing',
                       ('train', 'dev', 'test')),
    'BigramShift': ('classification', 'split', ('probing/bigram_shift.txt',), None, 'acc', 'probing',
                   ('train', 'dev', 'test')),
    'Tense': ('classification', 'split', ('probing/past_present.txt',), None, 'acc', 'probing',
             ('train', 'dev', 'test')),
    'SubjNumber': ('classification', 'split', ('probing/subj_number.txt',), None, 'acc', 'probing',
                  ('train', 'dev', 'test')),
    'ObjNumber': ('classification', 'split', ('probing/obj_number.txt',), None, 'acc', 'probing',
                 ('train', 'dev', 'test')),
    'OddManOut': ('classification', 'split', ('probing/odd_man_out.txt',), None, 'acc', 'probing',
                 ('train', 'dev', 'test')),
    'CoordinationInversion': ('classification', 'split', ('probing/coordination_inversion.txt',), None, 'acc',
                             'probing', ('train', 'dev', 'test')),
}

#: The old engine.tasks.SENTEVAL_FILE_LINES.
OLD_FILE_LINES = {
    'downstream/MR/rt-polarity.neg': 5331,
    'downstream/MR/rt-polarity.pos': 5331,
    'downstream/MRPC/msr_paraphrase_test.txt': 1726,
    'downstream/MRPC/msr_paraphrase_train.txt': 4077,
    'downstream/SICK/SICK_test_annotated.txt': 4928,
    'downstream/SICK/SICK_train.txt': 4501,
    'downstream/SICK/SICK_trial.txt': 501,
    'downstream/SST/binary/sentiment-dev': 872,
    'downstream/SST/binary/sentiment-test': 1821,
    'downstream/SST/binary/sentiment-train': 67349,
    'downstream/SST/fine/sentiment-dev': 1101,
    'downstream/SST/fine/sentiment-test': 2210,
    'downstream/SST/fine/sentiment-train': 8544,
    'downstream/STS/STSBenchmark/sts-dev.csv': 1500,
    'downstream/STS/STSBenchmark/sts-test.csv': 1379,
    'downstream/STS/STSBenchmark/sts-train.csv': 5749,
    'downstream/SUBJ/subj.objective': 5000,
    'downstream/SUBJ/subj.subjective': 5000,
    'downstream/TREC/TREC_10.label': 500,
    'downstream/TREC/train_5500.label': 5452,
    'probing/bigram_shift.txt': 120000,
    'probing/coordination_inversion.txt': 120000,
    'probing/obj_number.txt': 120000,
    'probing/odd_man_out.txt': 120000,
    'probing/past_present.txt': 120000,
    'probing/sentence_length.txt': 120000,
    'probing/subj_number.txt': 120000,
    'probing/top_constituents.txt': 120000,
    'probing/tree_depth.txt': 120000,
    'probing/word_content.txt': 120000,
}

#: The old data.check.STANDARD_SIZES (STS12-16: the old data.sources.STS_SCORED_PAIRS).
OLD_STANDARD_SIZES = {
    'MR': {'all': 10662},
    'SUBJ': {'all': 10000},
    'SST2': {'dev': 872, 'test': 1821, 'train': 67349},
    'SST5': {'dev': 1101, 'test': 2210, 'train': 8544},
    'TREC': {'test': 500, 'train': 5452},
    'MRPC': {'test': 1725, 'train': 4076},
    'SICKRelatedness': {'dev': 500, 'test': 4927, 'train': 4500},
    'SICKEntailment': {'dev': 500, 'test': 4927, 'train': 4500},
    'STSBenchmark': {'dev': 1500, 'test': 1379, 'train': 5749},
    'STS12': {'MSRpar': 750, 'MSRvid': 750, 'SMTeuroparl': 459, 'surprise.OnWN': 750, 'surprise.SMTnews': 399},
    'STS13': {'FNWN': 189, 'OnWN': 561, 'headlines': 750},
    'STS14': {'OnWN': 750,
             'deft-forum': 450,
             'deft-news': 300,
             'headlines': 750,
             'images': 750,
             'tweet-news': 750},
    'STS15': {'answers-forums': 375, 'answers-students': 750, 'belief': 375, 'headlines': 750, 'images': 750},
    'STS16': {'answer-answer': 254,
             'headlines': 249,
             'plagiarism': 230,
             'postediting': 244,
             'question-question': 209},
    'Length': {'dev': 10000, 'test': 10000, 'train': 100000},
    'WordContent': {'dev': 10000, 'test': 10000, 'train': 100000},
    'Depth': {'dev': 10000, 'test': 10000, 'train': 100000},
    'TopConstituents': {'dev': 10000, 'test': 10000, 'train': 100000},
    'BigramShift': {'dev': 10000, 'test': 10000, 'train': 100000},
    'Tense': {'dev': 10000, 'test': 10000, 'train': 100000},
    'SubjNumber': {'dev': 10000, 'test': 10000, 'train': 100000},
    'ObjNumber': {'dev': 10000, 'test': 10000, 'train': 100000},
    'OddManOut': {'dev': 10000, 'test': 10000, 'train': 100000},
    'CoordinationInversion': {'dev': 10000, 'test': 10000, 'train': 100000},
}

#: The old engine.tasks.PROBING_LABELS (as sorted lists).
OLD_PROBING_LABELS = {
    'Length': ['0', '1', '2', '3', '4', '5'],
    'WordContent': None,
    'Depth': ['10', '11', '12', '5', '6', '7', '8', '9'],
    'TopConstituents': ['ADVP_NP_VP_.', 'CC_ADVP_NP_VP_.', 'CC_NP_VP_.', 'IN_NP_VP_.', 'NP_ADVP_VP_.',
                       'NP_NP_VP_.', 'NP_PP_.', 'NP_VP_.', 'OTHER', 'PP_NP_VP_.', 'RB_NP_VP_.', 'SBAR_NP_VP_.',
                       'SBAR_VP_.', 'S_CC_S_.', 'S_NP_VP_.', 'S_VP_.', 'VBD_NP_VP_.', 'VP_.', 'WHADVP_SQ_.',
                       'WHNP_SQ_.'],
    'BigramShift': ['I', 'O'],
    'Tense': ['PAST', 'PRES'],
    'SubjNumber': ['NN', 'NNS'],
    'ObjNumber': ['NN', 'NNS'],
    'OddManOut': ['C', 'O'],
    'CoordinationInversion': ['I', 'O'],
}

#: The old data.check.STANDARD_CLASSES.
OLD_STANDARD_CLASSES = {
    'Length': 6,
    'WordContent': 1000,
    'TopConstituents': 20,
    'BigramShift': 2,
    'Tense': 2,
    'SubjNumber': 2,
    'ObjNumber': 2,
    'OddManOut': 2,
    'CoordinationInversion': 2,
}

#: The old vocab.PROBING_GROUPS.
OLD_PROBING_GROUPS = {
    'surface': ('Length', 'WordContent'),
    'syntactic': ('Depth', 'TopConstituents', 'BigramShift'),
    'semantic': ('Tense', 'SubjNumber', 'ObjNumber', 'OddManOut', 'CoordinationInversion'),
}

#: The old data.sources.GROUPS.
OLD_GROUPS = {
    'all': ('CR', 'MR', 'MPQA', 'SUBJ', 'SST2', 'SST5', 'TREC', 'MRPC', 'SICKRelatedness', 'SICKEntailment',
           'STSBenchmark', 'STS12', 'STS13', 'STS14', 'STS15', 'STS16', 'Length', 'WordContent', 'Depth',
           'TopConstituents', 'BigramShift', 'Tense', 'SubjNumber', 'ObjNumber', 'OddManOut',
           'CoordinationInversion'),
    'probing': ('Length', 'WordContent', 'Depth', 'TopConstituents', 'BigramShift', 'Tense', 'SubjNumber',
               'ObjNumber', 'OddManOut', 'CoordinationInversion'),
    'downstream': ('CR', 'MR', 'MPQA', 'SUBJ', 'SST2', 'SST5', 'TREC', 'MRPC', 'SICKRelatedness',
                  'SICKEntailment', 'STSBenchmark', 'STS12', 'STS13', 'STS14', 'STS15', 'STS16'),
    'sick': ('SICKRelatedness', 'SICKEntailment'),
    'sts': ('STS12', 'STS13', 'STS14', 'STS15', 'STS16'),
    'sst': ('SST2', 'SST5'),
    'classification': ('CR', 'MR', 'MPQA', 'SUBJ'),
}

#: The old data.sources.DATASETS: dataset -> the tasks it serves.
OLD_DATASET_TASKS = {
    'BigramShift': ('BigramShift',),
    'CR': ('CR',),
    'CoordinationInversion': ('CoordinationInversion',),
    'Depth': ('Depth',),
    'Length': ('Length',),
    'MPQA': ('MPQA',),
    'MR': ('MR',),
    'MRPC': ('MRPC',),
    'ObjNumber': ('ObjNumber',),
    'OddManOut': ('OddManOut',),
    'SICK': ('SICKRelatedness', 'SICKEntailment'),
    'SST2': ('SST2',),
    'SST5': ('SST5',),
    'STS12': ('STS12',),
    'STS13': ('STS13',),
    'STS14': ('STS14',),
    'STS15': ('STS15',),
    'STS16': ('STS16',),
    'STSBenchmark': ('STSBenchmark',),
    'SUBJ': ('SUBJ',),
    'SubjNumber': ('SubjNumber',),
    'TREC': ('TREC',),
    'Tense': ('Tense',),
    'TopConstituents': ('TopConstituents',),
    'WordContent': ('WordContent',),
}


# ------------------------------------------------------------------------------------------------ the old tables


def test_every_spec_equals_the_old_spec_table():
    assert registry.TASK_NAMES[:4] == ("CR", "MR", "MPQA", "SUBJ") and len(registry.TASK_NAMES) == 28
    assert list(registry.task_names()) == list(OLD_SPECS)  # SentEval's order, SNLI/ImageCaptionRetrieval left out
    for name, old in OLD_SPECS.items():
        s = get_task(name)
        assert (s.kind, s.evaluator, s.files, s.n_classes, s.main_metric, s.folder, s.splits) == old, name


def test_sizes_and_line_counts_equal_the_old_tables():
    """Split sizes (SST2 67349/872/1821, TREC 5452/500, MR 10662, ...) and file line counts, header lines
    included, are what data.check and the downloader used to hard-code."""
    assert registry.SENTEVAL_FILE_LINES == OLD_FILE_LINES
    sizes = {s.name: s.sizes for s in registry.specs() if s.sizes is not None}
    assert sizes == OLD_STANDARD_SIZES
    assert get_task("SST2").sizes == {"train": 67349, "dev": 872, "test": 1821}
    assert get_task("TREC").sizes == {"train": 5452, "test": 500} and get_task("MR").sizes == {"all": 10662}
    assert {s.name: s.approx_size for s in registry.specs() if s.approx_size} == {
        "CR": "about 3.8k", "MPQA": "about 10.6k"}


def test_labels_groups_and_rules_equal_the_old_tables():
    labels = {s.name: (sorted(s.labels) if s.labels is not None else None) for s in registry.specs()
              if s.is_probing}
    assert labels == OLD_PROBING_LABELS
    assert {s.name: s.standard_classes for s in registry.specs() if s.standard_classes} == OLD_STANDARD_CLASSES
    assert registry.PROBING_GROUPS == OLD_PROBING_GROUPS
    assert sources.groups() == OLD_GROUPS
    assert registry.NO_DEV_TASKS == ("STS12", "STS13", "STS14", "STS15", "STS16")
    assert [s.name for s in registry.specs() if not s.has_dev] == list(registry.NO_DEV_TASKS)
    assert [s.name for s in registry.specs() if s.encoding == "latin-1"] == ["CR", "MR", "MPQA", "SUBJ", "TREC"]
    assert [s.name for s in registry.specs() if s.force_linear] == ["WordContent"]
    assert [s.name for s in registry.specs() if s.extra_f1] == ["MRPC"]
    assert [s.name for s in registry.specs() if s.pair] == [
        "MRPC", "SICKRelatedness", "SICKEntailment", "STSBenchmark", "STS12", "STS13", "STS14", "STS15", "STS16"]
    assert {n: get_task(n).splits for n in STS_DATASETS} == STS_DATASETS
    assert {n: tuple(get_task(n).sizes) for n in STS_DATASETS} == STS_DATASETS  # scored pairs name the same sets


def test_downloader_datasets_follow_the_specs():
    """Each download recipe serves the tasks whose spec names it, and places exactly their files."""
    assert {name: ds.tasks for name, ds in sources.DATASETS.items()} == OLD_DATASET_TASKS
    for name, ds in sources.DATASETS.items():
        files = {f for t in ds.tasks for f in get_task(t).files}
        assert {o.path for o in ds.outputs} == files, name
        for o in ds.outputs:
            assert o.lines == registry.SENTEVAL_FILE_LINES.get(o.path), o.path
    assert {s.dataset for s in registry.specs()} == set(sources.DATASETS)


def test_every_family_declares_its_own_tasks():
    for family in FAMILIES:
        short = family.__name__.rsplit(".", 1)[1]
        assert family.SPECS and all(s.family == short for s in family.SPECS), short
        assert all(get_task(s.name) is s for s in family.SPECS)


def test_task_facts_are_spelt_once():
    """The facts moved to the family files are not written a second time anywhere in the package."""
    homes = {  # fact: (how it is spelt, the one file allowed to spell it)
        "SST2 train size": (r"\b67349\b", "engine/families/sst.py"),
        "STS12 sub-datasets": (r"\"surprise\.SMTnews\"", "engine/families/sts.py"),
        "probing file names": (r"\"sentence_length\.txt\"", "engine/families/probing.py"),
        "probing groups": (r"\"syntactic\": \(", None),
        "TREC classes": (r"\"ABBR\": 0", "engine/families/trec.py"),
        "WordContent rule": (r"== \"WordContent\"", None),
        "MRPC rule": (r"== \"MRPC\"", None),
        "pair-kind test": (r"kind in \(\"pair_classification\", \"relatedness\"", "engine/spec.py"),
    }
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        text = path.read_text(encoding="utf-8")
        for what, (pattern, home) in homes.items():
            if re.search(pattern, text):
                assert rel == home, f"{rel} spells out the {what}; read it from the task's TaskSpec"


def test_a_spec_with_a_typo_fails_at_declaration():
    with pytest.raises(ValueError, match="'Oops'.*evaluator 'kfod'"):
        TaskSpec(
            "Oops", "classification", "kfod", ("x",), 2, "acc", "downstream/Oops", ("all",), family="binary",
            loader=lambda root, spec: ({}, [], None))
    with pytest.raises(ValueError, match="sizes name"):
        TaskSpec("T", "classification", "kfold", ("x",), 2, "acc", "d", ("train", "test"),
                                   family="trec", loader=lambda root, spec: ({}, [], None), sizes={"train": 1})
    with pytest.raises(ValueError, match="already known"):
        register(get_task("MR"))


# ------------------------------------------------------------------------------------------------ a fifth binary task

N_EACH = 30


@pytest.fixture
def fifth_task(monkeypatch):
    """A fifth binary task, declared the way binary.py declares MR (one spec), with one download recipe."""
    spec = register(binary_task("FIFTH", ("fifth.pos", N_EACH), ("fifth.neg", N_EACH)))
    recipe = sources.Dataset(
        name="FIFTH",
        tasks=("FIFTH",),
        outputs=tuple(sources.Output(f, lines=spec.file_lines[f], exact=False) for f in spec.files),
        recipes=(sources.Recipe("local copy", (sources.Artifact("fifth.pos", ()), sources.Artifact("fifth.neg", ())),
                                sources.copy_as({"fifth.pos": spec.files[0], "fifth.neg": spec.files[1]})),),
    )
    monkeypatch.setitem(sources.DATASETS, "FIFTH", recipe)
    yield spec
    registry.unregister("FIFTH")


def _raw_files(folder: Path) -> None:
    """Real text files: positive lines say 'good', negative ones 'bad', with filler words of varying length."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    filler = ["the", "film", "plot", "actors", "was", "very", "quite", "and", "story"]
    for name, word in (("fifth.pos", "good"), ("fifth.neg", "bad")):
        lines = [" ".join([*rng.choice(filler, size=int(rng.integers(2, 8))), word]) for _ in range(N_EACH)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="latin-1")


def _batcher(params, batch):
    return np.array([[s.count("good"), s.count("bad"), len(s)] for s in batch], dtype=np.float64)


def test_a_fifth_binary_task_is_one_spec_and_one_recipe(fifth_task, tmp_path):
    mirror, dest = tmp_path / "raw", tmp_path / "data"
    _raw_files(mirror)

    # the downloader and --tasks know it by name and by group
    assert sources.expand_tasks(["fifth"]) == ["FIFTH"]
    assert "FIFTH" in sources.expand_tasks(["classification"]) and "FIFTH" in sources.all_tasks()
    results = download_mod.download(["FIFTH"], dest, mirrors=[str(mirror)], progress=False, log=lambda m: None)
    assert [(r.dataset, r.status) for r in results] == [("FIFTH", "placed")], results[0].error

    # the data check finds it complete at its standard size, with the download's provenance
    report = check_mod.check(dest, ["FIFTH"])
    t = report.task("FIFTH")
    assert (t.status, t.sizes, t.standard, t.classes) == ("complete", {"all": 2 * N_EACH}, {"all": 60}, 2)
    assert any("downloaded" in n for n in t.notes) and not report.failed

    # the engine loads and evaluates it as SentEval evaluates MR (innerkfold: ndev == ntest == pool size)
    task = load_task("FIFTH", dest)
    assert task.label_names == ["negative", "positive"] and task.data["all"]["y"].count(1) == N_EACH
    result = SE({"task_path": str(dest), "usepytorch": False, "kfold": 3}, _batcher).eval("FIFTH")
    assert result["ndev"] == result["ntest"] == 2 * N_EACH
    assert result["acc"] == 100.0 and result["devacc"] == 100.0

    # a file cut short is caught with the line count the spec declares, naming the task's download command
    pos = dest / fifth_task.files[0]
    data = pos.read_bytes()
    pos.write_bytes(data[: data.find(b"\n") + 3])  # line 1, then two bytes of line 2 and no newline
    t = check_mod.check(dest, ["FIFTH"]).task("FIFTH")
    assert t.status == "broken" and "cut short" in t.problems[0] and "--tasks FIFTH --force" in t.problems[0]


def test_a_registered_task_without_a_recipe_is_still_checked(tmp_path):
    spec = register(binary_task("SIXTH", ("six.pos", None), ("six.neg", None)))
    try:
        folder = tmp_path / spec.folder
        folder.mkdir(parents=True)
        (folder / "six.pos").write_text("a good one\n", encoding="latin-1")
        (folder / "six.neg").write_text("a bad one\n", encoding="latin-1")
        t = check_mod.check(tmp_path, ["SIXTH"]).task("SIXTH")
        assert (t.status, t.sizes) == ("present", {"all": 2})
    finally:
        registry.unregister("SIXTH")
    with pytest.raises(ValueError, match="Unknown task 'SIXTH'"):
        get_task("SIXTH")
