"""The downloader against a real HTTP server on 127.0.0.1, and SentEval's post-processing on fixture archives.

The server (``http.server`` in a thread) serves small fixtures with scripted misbehaviour: a 404, a connection
dropped half-way (once, or every time), a server that ignores Range requests, wrong bytes. Nothing here touches the
network beyond 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from senteval_anatomy.data.__main__ import main
from senteval_anatomy.data.download import MANIFEST_NAME, Fetcher, download, mirror_candidates
from senteval_anatomy.data.sources import DATASETS, Artifact, Dataset, Output, Recipe, copy_as, expand_tasks
from senteval_anatomy.data.tokenization import cat_v, cut_fields, ptb_tokenize

# ------------------------------------------------------------------------------------------------ test server


class _Server:
    """Serves ``files[path] = (bytes, mode)``; ``mode`` in ok / drop_once / drop_always / ignore_range / 404.

    ``requests`` records ``(path, Range header)`` of every request, ``sent`` the body bytes written per path.
    """

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.sent: dict[str, int] = {}
        self.dropped: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                if self.path not in server.files or server.files[self.path][1] == "404":
                    self.send_error(404, "Not Found")
                    return
                data, mode = server.files[self.path]
                start = 0
                if rng and mode != "ignore_range":
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                drop = mode == "drop_always" or (mode == "drop_once" and self.path not in server.dropped)
                if drop:
                    server.dropped.add(self.path)
                    body = body[: max(1, len(body) // 2)]
                self.wfile.write(body)
                self.wfile.flush()
                server.sent[self.path] = server.sent.get(self.path, 0) + len(body)
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def server():
    s = _Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PAYLOAD = b"".join(f"line {i} of the fixture\n".encode() for i in range(4000))  # ~90 KB: several read chunks


def _dataset(
    server: _Server, *, mode: str = "ok", sha: str | None = None, lines: int | None = None
) -> Dataset:
    """A one-file dataset whose artifact lives on the test server and is placed as ``downstream/FIX/data.txt``."""
    server.files["/fix/data.txt"] = (PAYLOAD, mode)
    art = Artifact("data.txt", (server.url("/fix/data.txt"),), sha)
    return Dataset(
        "FIX",
        ("FIX",),
        (Output("downstream/FIX/data.txt", _sha(PAYLOAD), PAYLOAD.count(b"\n") if lines is None else lines),),
        (Recipe("test server", (art,), copy_as({"data.txt": "downstream/FIX/data.txt"})),),
    )


def _run(ds: Dataset, dest: Path, **kw):
    kw.setdefault("retries", 2)
    kw.setdefault("timeout", 10)
    return download(datasets=[ds], dest=dest, backoff=0, progress=False, log=lambda m: None, **kw)[0]


# ------------------------------------------------------------------------------------------------ downloader


def test_download_verifies_places_and_cleans_up(server, tmp_path):
    res = _run(_dataset(server, sha=_sha(PAYLOAD)), tmp_path)
    assert res.status == "placed", res.error
    assert (tmp_path / "downstream/FIX/data.txt").read_bytes() == PAYLOAD
    assert not (tmp_path / ".downloads").exists()  # raw downloads removed after success
    assert not list(tmp_path.glob(".staging-*"))
    assert "FIX" in (tmp_path / MANIFEST_NAME).read_text()
    again = _run(_dataset(server, sha=_sha(PAYLOAD)), tmp_path)
    assert again.status == "skipped"  # present and verified: no second download
    assert len(server.requests) == 1


def test_partial_file_is_resumed_with_range(server, tmp_path):
    ds = _dataset(server, sha=_sha(PAYLOAD))
    url = ds.recipes[0].artifacts[0].urls[0]
    cache = tmp_path / ".downloads"
    cache.mkdir()
    half = len(PAYLOAD) // 3
    (cache / "data.txt.part").write_bytes(PAYLOAD[:half])
    (cache / "data.txt.part.url").write_text(url)
    res = _run(ds, tmp_path)
    assert res.status == "placed", res.error
    assert server.requests == [("/fix/data.txt", f"bytes={half}-")]
    assert server.sent["/fix/data.txt"] == len(PAYLOAD) - half  # only the rest travelled
    assert (tmp_path / "downstream/FIX/data.txt").read_bytes() == PAYLOAD


def test_partial_from_another_url_is_not_resumed(server, tmp_path):
    ds = _dataset(server, sha=_sha(PAYLOAD))
    cache = tmp_path / ".downloads"
    cache.mkdir()
    (cache / "data.txt.part").write_bytes(b"bytes from somewhere else")
    (cache / "data.txt.part.url").write_text("http://elsewhere.invalid/data.txt")
    res = _run(ds, tmp_path)
    assert res.status == "placed", res.error
    assert server.requests == [("/fix/data.txt", None)]


def test_dropped_connection_is_retried_and_resumed(server, tmp_path):
    res = _run(_dataset(server, mode="drop_once", sha=_sha(PAYLOAD)), tmp_path)
    assert res.status == "placed", res.error
    assert len(server.requests) == 2
    first_len = len(PAYLOAD) // 2
    assert server.requests[1] == ("/fix/data.txt", f"bytes={first_len}-")
    assert (tmp_path / "downstream/FIX/data.txt").read_bytes() == PAYLOAD


def test_connection_dropped_every_time_gives_clear_error_and_keeps_partial(server, tmp_path):
    res = _run(_dataset(server, mode="drop_always", sha=_sha(PAYLOAD)), tmp_path, retries=2)
    assert res.status == "failed"
    assert len(server.requests) == 3  # first try + 2 retries, each resuming
    assert all(r[1] for r in server.requests[1:])
    assert server.url("/fix/data.txt") in res.error
    assert "gave up after 3 attempts" in res.error
    assert str(tmp_path / "downstream/FIX/data.txt") in res.error  # the expected path
    assert "--source data.txt=" in res.error  # what to do
    assert not (tmp_path / "downstream").exists()
    part = tmp_path / ".downloads" / "data.txt.part"
    assert part.is_file() and 0 < part.stat().st_size < len(PAYLOAD)  # kept for the next run


def test_404_names_url_and_expected_path_and_is_not_retried(server, tmp_path):
    ds = _dataset(server, mode="404")
    dest = tmp_path / "new"
    res = _run(ds, dest)
    assert res.status == "failed"
    assert len(server.requests) == 1
    assert "HTTP 404" in res.error and server.url("/fix/data.txt") in res.error
    assert str(dest / "downstream/FIX/data.txt") in res.error
    assert not dest.exists()  # a failed run leaves no trace, not even the folder it would have created


def test_checksum_mismatch_places_nothing(server, tmp_path):
    res = _run(_dataset(server, sha="0" * 64), tmp_path)
    assert res.status == "failed"
    assert "sha256 mismatch" in res.error
    assert not (tmp_path / "downstream").exists()
    assert not (tmp_path / ".downloads" / "data.txt").exists()  # wrong bytes are not cached either
    assert not (tmp_path / ".downloads" / "data.txt.part").exists()


def test_truncated_file_fails_line_count_and_keeps_existing_file(server, tmp_path):
    """A server that serves a short file (complete HTTP-wise) is caught by the expected line count, and the
    existing copy in the destination stays as it was."""
    existing = tmp_path / "downstream/FIX/data.txt"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"old content\n")
    ds = _dataset(server, lines=PAYLOAD.count(b"\n") + 10)
    res = _run(ds, tmp_path)
    assert res.status == "failed"
    assert "lines, expected" in res.error
    assert existing.read_bytes() == b"old content\n"
    assert not list(tmp_path.glob(".staging-*"))


def test_file_that_differs_is_never_overwritten_without_force(server, tmp_path):
    """A placed file edited by hand is not replaced by a later download; --force replaces it and keeps a backup."""
    ds = _dataset(server, sha=_sha(PAYLOAD))
    assert _run(ds, tmp_path).status == "placed"
    placed = tmp_path / "downstream/FIX/data.txt"
    edited = PAYLOAD.replace(b"line 7 of", b"line seven of")
    placed.write_bytes(edited)

    res = _run(ds, tmp_path)
    assert res.status == "failed"
    assert str(placed) in res.error and "--force" in res.error and "left unchanged" in res.error
    assert placed.read_bytes() == edited
    assert not (tmp_path / ".backup").exists()
    assert len(server.requests) == 2  # it did download, compared, and refused

    logs: list[str] = []
    res = download(datasets=[ds], dest=tmp_path, force=True, backoff=0, progress=False, log=logs.append)[0]
    assert res.status == "placed", res.error
    assert placed.read_bytes() == PAYLOAD
    assert len(res.backups) == 1 and res.backups[0].read_bytes() == edited
    assert res.backups[0].is_relative_to(tmp_path / ".backup")
    assert res.backups[0].as_posix().endswith("downstream/FIX/data.txt")
    assert any(str(res.backups[0]) in line for line in logs)  # the user is told where the old file is

    again = _run(ds, tmp_path, force=True)  # identical bytes: replaced without a backup
    assert again.status == "placed" and again.backups == []
    assert len(list((tmp_path / ".backup").rglob("*.txt*"))) == 1


def test_cli_download_keeps_local_edits_and_backs_up_with_force(tmp_path, capsys):
    """Through the real table and CLI (a probing file from a local --source): an edit that keeps the line count is
    left alone ("present"), a file with lines removed is not overwritten, and --force keeps a backup."""
    from senteval_anatomy.engine.registry import SENTEVAL_FILE_LINES

    n = SENTEVAL_FILE_LINES["probing/sentence_length.txt"]
    src = tmp_path / "src" / "sentence_length.txt"
    src.parent.mkdir()
    src.write_bytes(b"".join(b"tr\t%d\tword %d .\n" % (i % 6, i) for i in range(n)))
    dest = tmp_path / "data"
    args = ["download", "--tasks", "Length", "--dest", str(dest), "--mirror-only", "--no-progress"]
    args += ["--source", f"sentence_length.txt={src}"]
    assert main(args) == 0
    placed = dest / "probing/sentence_length.txt"
    assert placed.read_bytes() == src.read_bytes()

    edited = placed.read_bytes().replace(b"tr\t0\tword 0 .", b"tr\t0\tmy word 0 .", 1)
    placed.write_bytes(edited)
    capsys.readouterr()
    assert main(args) == 0 and placed.read_bytes() == edited
    assert "already present" in capsys.readouterr().err

    shortened = b"".join(edited.splitlines(keepends=True)[:-5])
    placed.write_bytes(shortened)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert str(placed) in err and "--force" in err
    assert placed.read_bytes() == shortened

    assert main([*args, "--force"]) == 0
    err = capsys.readouterr().err
    assert placed.read_bytes() == src.read_bytes()
    backup = next((dest / ".backup").rglob("sentence_length.txt"))
    assert backup.read_bytes() == shortened and str(backup) in err


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    ds = _dataset(server, mode="ignore_range", sha=_sha(PAYLOAD))
    cache = tmp_path / ".downloads"
    cache.mkdir()
    (cache / "data.txt.part").write_bytes(PAYLOAD[:100])
    (cache / "data.txt.part.url").write_text(ds.recipes[0].artifacts[0].urls[0])
    res = _run(ds, tmp_path)
    assert res.status == "placed", res.error
    assert (tmp_path / "downstream/FIX/data.txt").read_bytes() == PAYLOAD  # not 100 bytes + the whole file


def test_second_url_and_second_recipe_are_fallbacks(server, tmp_path):
    server.files["/dead/a.txt"] = (b"", "404")
    server.files["/mirror/a.txt"] = (b"raw\n", "ok")
    art = Artifact("a.txt", (server.url("/dead/a.txt"), server.url("/mirror/a.txt")))
    ds = Dataset(
        "A",
        ("A",),
        (Output("downstream/A/a.txt", lines=1),),
        (Recipe("r", (art,), copy_as({"a.txt": "downstream/A/a.txt"})),),
    )
    res = _run(ds, tmp_path)
    assert res.status == "placed" and res.sources["a.txt"] == server.url("/mirror/a.txt")

    prepared = tmp_path / "mirror" / "downstream" / "B" / "b.txt"
    prepared.parent.mkdir(parents=True)
    prepared.write_bytes(b"prepared\n")
    raw = Artifact("b.zip", (server.url("/dead/b.zip"),))
    ds_b = Dataset(
        "B",
        ("B",),
        (Output("downstream/B/b.txt", _sha(b"prepared\n"), 1),),
        (
            Recipe("raw", (raw,), copy_as({"b.zip": "downstream/B/b.txt"})),
            Recipe("prepared", (Artifact("B/b.txt", ()),), copy_as({"B/b.txt": "downstream/B/b.txt"})),
        ),
    )
    res = _run(ds_b, tmp_path / "dest", mirrors=[str(tmp_path / "mirror")])
    assert res.status == "placed" and res.recipe == "prepared"
    assert ("/dead/b.zip", None) not in server.requests  # the local pass found it before any network try


def test_mirror_lookup_in_folder_archive_and_url(tmp_path):
    folder = tmp_path / "SentEval" / "data" / "downstream" / "SICK"
    folder.mkdir(parents=True)
    (folder / "SICK_train.txt").write_text("x\n")
    assert mirror_candidates("SICK/SICK_train.txt", [str(tmp_path / "SentEval")]) == [
        str(folder / "SICK_train.txt")
    ]
    archive = tmp_path / "m.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder / "SICK_train.txt", arcname="data/downstream/SICK/SICK_train.txt")
    assert mirror_candidates("SICK/SICK_train.txt", [str(archive)]) == [
        f"{archive}!data/downstream/SICK/SICK_train.txt"
    ]
    assert mirror_candidates("sick train.zip", ["https://example.org/m/"]) == [
        "https://example.org/m/sick%20train.zip"
    ]
    art = Artifact("SICK/SICK_train.txt", (), _sha(b"x\n"))
    got = Fetcher(tmp_path / "cache", progress=False).fetch(
        art, f"{archive}!data/downstream/SICK/SICK_train.txt"
    )
    assert got.read_bytes() == b"x\n"


def test_cli_download_with_real_table_rejects_wrong_bytes(server, tmp_path, capsys):
    """SST2's raw files have known checksums: bytes that are not SentEval's are refused and nothing is placed."""
    for s in ("train", "dev", "test"):
        server.files[f"/sst/sentiment-{s}"] = (b"not the real file \t1\n", "ok")
    args = [
        "download",
        "--tasks",
        "SST2",
        "--dest",
        str(tmp_path),
        "--mirror-only",
        "--no-progress",
        "--retries",
        "0",
    ]
    for s in ("train", "dev", "test"):
        args += ["--source", f"sentiment-{s}={server.url(f'/sst/sentiment-{s}')}"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and "SST2" in err
    assert not (tmp_path / "downstream").exists()


def test_cli_argument_errors(tmp_path, capsys):
    assert main(["download", "--tasks", "NoSuchTask", "--dest", str(tmp_path)]) == 2
    assert "unknown task 'NoSuchTask'" in capsys.readouterr().err
    assert main(["download", "--tasks", "TREC", "--dest", str(tmp_path), "--source", "nope.txt=/x"]) == 2
    assert "--source names unknown" in capsys.readouterr().err
    assert (
        main(["download", "--tasks", "TREC", "--dest", str(tmp_path), "--mirror", str(tmp_path / "missing")])
        == 2
    )


def test_cli_bad_destination_and_settings_are_refused_before_any_work(tmp_path, capsys):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("mine")
    cases = [
        (["--dest", str(in_the_way)], f"--dest {in_the_way}: not a folder"),
        (["--dest", str(in_the_way / "sub")], f"{in_the_way} is a file"),
        (["--dest", str(tmp_path / "d"), "--retries", "-1"], "--retries -1: must be 0 or more"),
        (["--dest", str(tmp_path / "d"), "--timeout", "0"], "--timeout 0.0: must be a positive number"),
    ]
    for extra, message in cases:
        assert main(["download", "--tasks", "Length", "--mirror-only", "--no-progress", *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert in_the_way.read_text() == "mine" and not (tmp_path / "d").exists()
    assert main(["make-default", str(in_the_way)]) == 2
    assert "not a folder" in capsys.readouterr().err and in_the_way.read_text() == "mine"


def test_task_names_match_the_engine():
    from senteval_anatomy.engine import TASK_NAMES, UNSUPPORTED_TASKS, get_task

    supported = [t for t in TASK_NAMES if t not in UNSUPPORTED_TASKS]
    assert expand_tasks(None) == supported
    assert expand_tasks(["sick", "Depth,tense"]) == ["SICKRelatedness", "SICKEntailment", "Depth", "Tense"]
    for task in supported:  # every file the engine reads is produced by some dataset of the table
        produced = {o.path for ds in DATASETS.values() if task in ds.tasks for o in ds.outputs}
        assert set(get_task(task).files) <= produced, task


# ------------------------------------------------------------------------------------------------ post-processing


def _build(dataset: str, inputs: dict[str, bytes], tmp_path: Path, recipe: int = 0) -> Path:
    """Run the real table's build step on fixture inputs; returns the staging root."""
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    paths = {}
    for name, data in inputs.items():
        p = raw / name.replace("/", "__")
        p.write_bytes(data)
        paths[name] = p
    root = tmp_path / "out"
    DATASETS[dataset].recipes[recipe].build(paths, root)
    return root


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_trec_quotes_are_stripped(tmp_path):
    raw = b"DESC:def What is `` Nostradamus '' known for ?\nHUM:ind Who wrote ` Hamlet ' ?\n"
    root = _build(
        "TREC", {"train_5500.label": raw, "TREC_10.label": b"LOC:city Where 's Paris ?\n"}, tmp_path
    )
    assert (root / "downstream/TREC/train_5500.label").read_bytes() == (
        b"DESC:def What is  Nostradamus  known for ?\nHUM:ind Who wrote  Hamlet  ?\n"
    )
    assert (root / "downstream/TREC/TREC_10.label").read_bytes() == b"LOC:city Where s Paris ?\n"


def test_sst_files_are_renamed(tmp_path):
    inputs = {
        f"stsa.fine.{s}": f"{i} a {s} sentence .\n".encode() for i, s in enumerate(("train", "dev", "test"))
    }
    root = _build("SST5", inputs, tmp_path)
    for s in ("train", "dev", "test"):
        assert (root / f"downstream/SST/fine/sentiment-{s}").read_bytes() == inputs[f"stsa.fine.{s}"]
    assert not (root / "downstream/SST/fine/stsa.fine.train").exists()


def test_sick_zip_is_unpacked_and_moses_tokenized(tmp_path):
    header = b"pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"
    body = "1\tA man isn't playing the guitar.\tThe man's dog, \"Rex\", is running!\t3.6\tNEUTRAL"
    inputs = {}
    for split in ("train", "trial", "test_annotated"):
        eol = b"\r\n" if split == "test_annotated" else b"\n"
        content = header + eol + body.encode() + eol
        inputs[f"sick_{split}.zip"] = _zip({f"SICK_{split}.txt": content, "readme.txt": b"about SICK"})
    root = _build("SICK", inputs, tmp_path)
    train = (root / "downstream/SICK/SICK_train.txt").read_bytes().decode().split("\n")
    assert train[0] == header.decode()
    assert (
        train[1]
        == "1\tA man isn 't playing the guitar .\tThe man 's dog , \" Rex \" , is running !\t3.6\tNEUTRAL"
    )
    test = (root / "downstream/SICK/SICK_test_annotated.txt").read_bytes()
    assert test.endswith(b"\tNEUTRAL\r\n")  # the CR stays with the last column, as with cut/paste
    from senteval_anatomy.engine import load_task

    task = load_task("SICKEntailment", root)
    assert task.data["train"]["A"][0] == ["A", "man", "isn", "'t", "playing", "the", "guitar", "."]


def test_sts16_files_are_renamed_tokenized_and_lowercased(tmp_path):
    members = {}
    for s in DATASETS["STS16"].outputs[0::2]:
        name = s.path.split("STS.input.")[1][: -len(".txt")]
        members[f"sts2016-english-with-gs-v1.0/STS2016.input.{name}.txt"] = (
            b"The Cat's hat.\tA DOG, barking!\textra\n"
        )
        members[f"sts2016-english-with-gs-v1.0/STS2016.gs.{name}.txt"] = b"4.2\n"
    members["__MACOSX/sts2016-english-with-gs-v1.0/._STS2016.gs.headlines.txt"] = b"junk"
    root = _build("STS16", {"STS2016-en-test.zip": _zip(members)}, tmp_path)
    folder = root / "downstream/STS/STS16-en-test"
    assert (folder / "STS.input.headlines.txt").read_text() == "the cat 's hat .\ta dog , barking !\n"
    assert (folder / "STS.gs.headlines.txt").read_text() == "4.2\n"
    assert not list(folder.glob("STS2016.*"))
    from senteval_anatomy.engine import load_task

    assert load_task("STS16", root).data["headlines"]["gold"] == [4.2]


def test_stsb_keeps_five_columns_and_lowercases(tmp_path):
    line = b"main-captions\tMSRvid\t2012test\t0001\t5.000\tA plane is taking off.\tAn air plane is taking off.\tsrc\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for s in ("train", "dev", "test"):
            info = tarfile.TarInfo(f"stsbenchmark/sts-{s}.csv")
            info.size = len(line)
            tf.addfile(info, io.BytesIO(line))
    root = _build("STSBenchmark", {"Stsbenchmark.tar.gz": buf.getvalue()}, tmp_path)
    assert (root / "downstream/STS/STSBenchmark/sts-dev.csv").read_bytes() == (
        b"main-captions\tMSRvid\t2012test\t0001\t5.000\ta plane is taking off .\tan air plane is taking off .\n"
    )


def test_mr_cr_subj_mpqa_use_cat_v_then_ptb_rules(tmp_path):
    zipped = _zip(
        {
            "data/rt10662/rt-polarity.pos": b"it's a \"great\" film, isn't it?\n" + b"caf\xe9 society.\n",
            "data/rt10662/rt-polarity.neg": b"gonna be dull (really)...\n",
        }
    )
    root = _build("MR", {"datasmall_NB_ACL12.zip": zipped}, tmp_path)
    assert (
        root / "downstream/MR/rt-polarity.pos"
    ).read_text() == "it 's a `` great '' film , is n't it ?\ncafM-i society .\n"
    assert (root / "downstream/MR/rt-polarity.neg").read_text() == "gon na be dull ( really ) ...\n"


def test_shell_helpers():
    assert cat_v(bytes([0xE9, 0x41, 0x09, 0x0A, 0x0D, 0x7F, 0x89, 0x80])) == b"M-iA\t\n^M^?M-^IM-^@"
    assert cut_fields("a\tb\tc", [3, 1]) == "a\tc"
    assert cut_fields("no tab here", [2]) == "no tab here"  # cut prints lines without a delimiter whole
    assert ptb_tokenize("I cannot go -- wanna come?") == "I can not go -- wan na come ?"
    assert ptb_tokenize("The U.S. economy grew.") == "The U.S. economy grew ."


@pytest.mark.parametrize("damage", ["truncated tar.gz", "zip with a bad CRC"])
def test_a_damaged_mirror_archive_is_one_line_naming_it(tmp_path, capsys, damage):
    """Issue 18: a truncated .tar.gz or a zip whose member fails its CRC, given as --mirror, ended in "EOFError …
    please report it". Now: one line naming the archive and what is wrong, exit 2, nothing placed."""
    import zipfile

    payload = (os.urandom(64).hex() + "\n") * 4000  # not compressible to nothing: truncation cuts real data
    if damage == "truncated tar.gz":
        archive = tmp_path / "mirror.tar.gz"
        src = tmp_path / "sentence_length.txt"
        src.write_text(payload)
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(src, arcname="data/probing/sentence_length.txt")
        raw = archive.read_bytes()
        archive.write_bytes(raw[: len(raw) // 2])
        what = "the archive is damaged: it is truncated"
    else:
        archive = tmp_path / "mirror.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("data/probing/sentence_length.txt", payload)
        raw = bytearray(archive.read_bytes())
        at = raw.index(payload[:32].encode()) + 100
        raw[at] = ord("x") if raw[at] != ord("x") else ord("y")  # one byte of the member changed: CRC mismatch
        archive.write_bytes(bytes(raw))
        what = "the archive is damaged while reading data/probing/sentence_length.txt: a zip member failed its check (Bad CRC-32"
    dest = tmp_path / "dest"
    status = main(["download", "--tasks", "Length", "--dest", str(dest), "--mirror", str(archive), "--mirror-only",
                   "--no-progress"])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert status == 2, err
    assert len(lines) == 1 and f"--mirror {archive}: {what}" in lines[0], err
    assert "Traceback" not in err and "please report" not in err
    assert not list(dest.rglob("*.txt")) if dest.exists() else True
