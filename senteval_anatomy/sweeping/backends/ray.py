"""Run a sweep on a Ray cluster: the same units, the same table, the same resume rules — on many workers.

Use it with ``sweep(..., backend="ray")`` (or ``backend=RayBackend(...)`` to tune it), or ``--backend ray`` on the
command line. ``ray_address`` / ``--ray-address`` / ``$RAY_ADDRESS`` joins an existing cluster; without one a local
cluster is started for the sweep and shut down after it. ``docs/scaling.md`` says how to launch a real cluster.

Units of work
-------------
*Encoding units* — (task, shard of its sentences). Each one loads the model once per worker process (it travels
through Ray's object store, on CPU, and is moved to the GPU Ray assigned) and encodes its shard with the same
:class:`~senteval_anatomy.store.FeatureStore` code as the local sweep. Shards are cut from the sentences in the
order the encoder batches them (longest first, ties alphabetical) at multiples of the batch size, so every shard
encodes exactly the batches the local sweep would, and the features are the same floats. A task of at most
``shard_size`` sentences is one shard, whose store entry is the very entry the local backend uses.

*Training units* — (task, view, chunk of probes). Each reads its probes' vectors from the task's shards through the
sweep's own batcher (:class:`~senteval_anatomy.sweeping.units.StoreBatcher`) and trains them with :func:`~senteval_anatomy.engine.batched.evaluate_many`. Probes never
interact (that is what makes the batched trainer exact), so a chunk's results do not depend on how the probes were
chunked: the rows are those of the local backend.

A training unit depends on the encoding units of its task, so Ray starts it as soon as they finish: encoding of one
task overlaps with training of another.

How features travel (``features=``)
-----------------------------------
``"store"`` (default when the sweep's FeatureStore is on disk)
    Encoding units write store entries into the sweep's cache directory; training units memory-map them. On a
    cluster the cache directory must be shared storage mounted at the same path on every node (NFS, Lustre, a
    cloud file system). Entries survive the driver, so a rerun does not encode again, and the atomic, race-safe
    store makes concurrent writers harmless.
``"object"``
    Encoding units return the features into Ray's object store and training units read them from there (zero-copy
    on the same node, streamed across nodes). For clusters without shared storage. Features then live only as long
    as the sweep: a rerun after a crash re-encodes the tasks that still have probes to train. The object store must
    hold a task's features (``n_sentences x (L*H*d + (L+1)*D)`` floats; see ``docs/scaling.md``).

GPUs
----
Ray's own scheduler spreads the units over the GPUs, one machine or many (:func:`unit_resources`): an encoding
unit asks for one whole GPU, a training unit for ``1 / train_units_per_gpu`` of one, so several probe chunks share
a GPU (each is small). Ray hands each task its GPU through ``CUDA_VISIBLE_DEVICES``, and :func:`unit_device` turns
that into the torch device. One mechanism for one machine and for a cluster, with retries and the object store for
free, is why several GPUs of one machine also go through Ray rather than a local process pool.

Fault tolerance and resume
--------------------------
A worker that dies mid-unit (killed, out of memory, node lost) makes Ray rerun the unit (``max_retries``); results
are written only by the driver, once per finished unit, so a retried unit is never counted twice. Every finished
training unit is written at once to ``<unit file stem>.parts/<first>-<end>.json`` next to the unit files (a unit file
of its own, whose key is the unit's key plus its probe range); when all
probes of a (task, view) are done the parts become the unit file, byte for byte what the local backend writes, and
the parts folder goes. A rerun after the driver was killed trains only the probes that no part holds.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...encoders.encoding import tokenize
from ...engine.batched import evaluate_many
from ...engine.params import apply_defaults
from ...engine.tasks import load_task
from ...store import FeatureStore
from ...vocab import VIEWS
from ..identity import UnitFileWarning, read_unit, write_unit
from ..units import StoreBatcher, probe_chunk_size, probe_index, result_rows
from . import PendingUnit, RunContext

__all__ = [
    "ENV_ADDRESS",
    "FEATURE_TRANSPORTS",
    "ClusterUnreachableError",
    "PendingUnit",
    "RayBackend",
    "BACKEND",
    "missing_ranges",
    "shard_bounds",
    "unit_device",
    "unit_resources",
]

#: Environment variable that names the cluster to join, as for every Ray program.
ENV_ADDRESS = "RAY_ADDRESS"

#: How encoded features reach the training units (see the module docstring).
FEATURE_TRANSPORTS: tuple[str, ...] = ("store", "object")

_PARTS_SUFFIX = ".parts"


class ClusterUnreachableError(ConnectionError):
    """The Ray cluster named by ``ray_address`` / ``$RAY_ADDRESS`` cannot be reached (one-line message)."""


# ------------------------------------------------------------------------------------------------ planning (pure)


def unit_resources(kind: str, cluster_gpus: float, *, train_units_per_gpu: int = 4) -> dict[str, float]:
    """The Ray resources one unit asks for.

    Without GPUs in the cluster every unit takes one CPU. With GPUs, an encoding unit takes a whole GPU (a forward
    pass of a large model fills one) and a training unit ``1 / train_units_per_gpu`` GPU (stacked linear probes use a
    fraction of one), so Ray packs that many probe chunks onto each GPU and spreads the rest over the others.

    >>> unit_resources("encode", 0), unit_resources("encode", 8), unit_resources("train", 8)
    ({'num_cpus': 1}, {'num_cpus': 1, 'num_gpus': 1}, {'num_cpus': 1, 'num_gpus': 0.25})
    """
    if kind not in ("encode", "train"):
        raise ValueError(f"unit kind {kind!r} is not 'encode' or 'train'.")
    if isinstance(train_units_per_gpu, bool) or not isinstance(train_units_per_gpu, int) or train_units_per_gpu < 1:
        raise ValueError(f"train_units_per_gpu must be a positive int, got {train_units_per_gpu!r}.")
    if not cluster_gpus or cluster_gpus <= 0:
        return {"num_cpus": 1}
    if kind == "encode":
        return {"num_cpus": 1, "num_gpus": 1}
    return {"num_cpus": 1, "num_gpus": 1 / train_units_per_gpu}


def unit_device(requested: Any, gpu_ids: Sequence[Any], *, cuda_available: bool, visible_remapped: bool = True) -> str:
    """The torch device a unit runs on, from what was asked and the GPUs Ray assigned to it.

    ``requested`` ``"auto"`` / ``None``: the assigned GPU, else the CPU — never a GPU that Ray did not assign, or
    every CPU unit of a node would pile onto its first GPU. An explicit device (``"cpu"``, ``"cuda:1"``) is used as
    given. Ray exposes the assigned GPUs as ``CUDA_VISIBLE_DEVICES``, so the first one is ``cuda:0`` inside the worker;
    with ``visible_remapped=False`` (``RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES`` set) it keeps its physical index.

    >>> unit_device("auto", [], cuda_available=False), unit_device("auto", ["3"], cuda_available=True)
    ('cpu', 'cuda:0')
    >>> unit_device("auto", ["3"], cuda_available=True, visible_remapped=False)
    'cuda:3'
    """
    if requested is not None and str(requested) != "auto":
        return str(requested)
    if not gpu_ids:
        return "cpu"
    if not cuda_available:
        raise RuntimeError(
            f"Ray assigned GPU(s) {list(gpu_ids)} to this unit, but torch in the worker has no CUDA: install a CUDA "
            "build of torch on the GPU nodes, or start them without GPUs (ray start --num-gpus 0)."
        )
    return "cuda:0" if visible_remapped else f"cuda:{int(gpu_ids[0])}"


def shard_bounds(n: int, batch_size: int, shard_size: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each encoding shard of ``n`` sentences in batching order.

    Every shard but the last holds a multiple of ``batch_size`` sentences (at least one batch), so the shards'
    batches are exactly the batches of one run over all ``n``.

    >>> shard_bounds(10, 4, 100), shard_bounds(10, 4, 5), shard_bounds(10, 4, 8)
    ([(0, 10)], [(0, 4), (4, 8), (8, 10)], [(0, 8), (8, 10)])
    """
    if n < 1 or batch_size < 1 or shard_size < 1:
        raise ValueError(f"shard_bounds needs positive sizes, got n={n}, batch_size={batch_size}, "
                         f"shard_size={shard_size}.")
    if n <= shard_size:
        return [(0, n)]
    step = max(batch_size, shard_size // batch_size * batch_size)
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def missing_ranges(n: int, done: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Chunks of at most ``size`` probes covering ``range(n)`` minus the ``[start, end)`` ranges already ``done``.

    Each gap is cut into as few chunks as ``size`` allows, of near-equal length (144 heads at 64 per unit: 3 x 48,
    not 64 + 64 + 16), so no unit is a straggler and each stack of probes is as large as it can be.

    >>> missing_ranges(10, [], 4), missing_ranges(10, [(0, 4), (6, 8)], 3)
    ([(0, 3), (3, 6), (6, 10)], [(4, 6), (8, 10)])
    """
    if size < 1:
        raise ValueError(f"probes per unit must be >= 1, got {size}.")
    covered = np.zeros(n, dtype=bool)
    for a, b in done:
        covered[a:b] = True
    out: list[tuple[int, int]] = []
    i = 0
    while i < n:
        if covered[i]:
            i += 1
            continue
        j = i
        while j < n and not covered[j]:
            j += 1
        k = -(-(j - i) // size)  # chunks in this gap
        cuts = [i + (j - i) * c // k for c in range(k + 1)]
        out += list(zip(cuts[:-1], cuts[1:]))
        i = j
    return out


# ------------------------------------------------------------------------------------------------ connecting


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            'backend="ray" needs Ray, an optional dependency: pip install "senteval_anatomy[ray]" '
            "(or pip install ray)."
        ) from exc
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a Ray address (``host:port`` or ``ray://host:port``); None for ``auto`` / ``local``."""
    rest = address.split("://", 1)[1] if "://" in address else address
    if rest in ("auto", "local", ""):
        return None
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterUnreachableError(
            f"ray address {address!r} is not host:port (e.g. 10.0.0.5:6379, or ray://10.0.0.5:10001 for Ray Client)."
        )
    return host.strip("[]"), int(port)


def connect(address: str | None, *, timeout_s: float = 5.0) -> bool:
    """Make sure this process is a Ray driver; return True when this call connected or started a cluster.

    An already initialised Ray (a test, a notebook) is used as it is. ``address`` (else ``$RAY_ADDRESS``) joins an
    existing cluster, after checking within ``timeout_s`` that its port answers — Ray itself would retry for minutes;
    nothing given starts a local cluster with every core of this machine.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get(ENV_ADDRESS) or None
    if address is None:
        ray.init(include_dashboard=False, logging_level="ERROR")
        return True
    target = _host_port(address)
    if target is not None:
        try:
            socket.create_connection(target, timeout=timeout_s).close()
        except OSError as exc:
            raise ClusterUnreachableError(
                f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it with `ray start "
                f"--head` there, fix --ray-address / ${ENV_ADDRESS}, or leave both unset to run a local cluster."
            ) from None
    try:
        ray.init(address=address, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterUnreachableError(f"cannot join the Ray cluster at {address}: {first}") from None
    return True


# ------------------------------------------------------------------------------------------------ worker side

# Per worker process: the deserialised encoder (by object id) and loaded tasks, so that the units a worker runs one
# after the other do not pay for them again. Bounded: a worker serves one sweep's model and a few tasks at a time.
_WORKER_ENCODERS: dict[str, Any] = {}
_WORKER_TASKS: dict[tuple[str, str, int], Any] = {}


def _worker_device(requested: Any) -> str:
    import ray
    import torch

    return unit_device(requested, ray.get_gpu_ids(), cuda_available=torch.cuda.is_available(),
                       visible_remapped=not os.environ.get("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"))


def _worker_encoder(box: list[Any]) -> Any:
    import ray
    import torch

    ref = box[0]
    key = ref.hex()
    if key not in _WORKER_ENCODERS:
        _WORKER_ENCODERS.clear()
        encoder = ray.get(ref)
        device = torch.device(_worker_device("auto"))
        encoder.model.to(device)
        encoder.device = device
        _WORKER_ENCODERS[key] = encoder
    return _WORKER_ENCODERS[key]


def _worker_task(name: str, task_path: str, seed: int) -> Any:
    key = (name, task_path, seed)
    if key not in _WORKER_TASKS:
        if len(_WORKER_TASKS) >= 2:
            _WORKER_TASKS.pop(next(iter(_WORKER_TASKS)))
        _WORKER_TASKS[key] = load_task(name, task_path, seed=seed)
    return _WORKER_TASKS[key]


def _encode_unit(box: list[Any], sentences: list[str], pooling: str, limit: int, batch_size: int,
                 store_spec: tuple[str | None, str, str], transport: str) -> Any:
    """Encoding unit: the store entry key of ``sentences`` ("store"), or the features themselves ("object")."""
    encoder = _worker_encoder(box)
    cache_dir, dtype, verify = store_spec
    store = FeatureStore(cache_dir, dtype=dtype, verify=verify, memory=transport == "object")
    feats = store.get(encoder, sentences, pooling=pooling, max_length=limit, views=VIEWS, batch_size=batch_size,
                      progress=False)
    if transport == "object":
        return feats
    return ("store", cache_dir, dtype, verify, feats.key)


class _RowGather:
    """``array[rows]`` over the row-concatenation of several shards' arrays, without concatenating them."""

    def __init__(self, arrays: Sequence[np.ndarray], offsets: np.ndarray) -> None:
        self.arrays = arrays
        self.offsets = offsets
        self.shape = (int(offsets[-1]), *arrays[0].shape[1:])

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.arrays[0].dtype)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        for k, arr in enumerate(self.arrays):
            mask = part == k
            if mask.any():
                out[mask] = arr[rows[mask] - self.offsets[k]]
        return out


class _JoinedFeatures:
    """The shards of one task read as one :class:`~senteval_anatomy.store.StoredFeatures` (``rows``, ``heads``,
    ``layers``), which is all the sweep's batcher uses."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self.sentences = [s for p in parts for s in p.sentences]
        offsets = np.cumsum([0] + [len(p.sentences) for p in parts])
        self._index = {s: i for i, s in enumerate(self.sentences)}
        self._parts, self._offsets = list(parts), offsets
        self.heads = _RowGather([p.heads for p in parts], offsets) if parts[0].heads is not None else None
        self.layers = _RowGather([p.layers for p in parts], offsets) if parts[0].layers is not None else None

    def read(self, view: str, rows: np.ndarray) -> np.ndarray:
        """``view``'s vectors of ``rows``, each shard read through its own checked ``read``."""
        rows = np.asarray(rows, dtype=np.int64)
        gather = getattr(self, view)
        out = np.empty((len(rows), *gather.shape[1:]), dtype=gather.arrays[0].dtype)
        part = np.searchsorted(self._offsets, rows, side="right") - 1
        for k, p in enumerate(self._parts):
            mask = part == k
            if mask.any():
                local = rows[mask] - self._offsets[k]
                out[mask] = p.read(view, local) if hasattr(p, "read") else getattr(p, view)[local]
        return out

    def rows(self, sentences: Sequence[str]) -> np.ndarray:
        try:
            return np.fromiter((self._index[s] for s in sentences), dtype=np.int64, count=len(sentences))
        except KeyError as exc:
            raise KeyError(f"sentence {exc.args[0]!r} is in no encoded shard of this task") from None


def _open_part(part: Any) -> Any:
    if isinstance(part, tuple) and part and part[0] == "store":
        _, cache_dir, dtype, verify, key = part
        try:
            return FeatureStore(cache_dir, dtype=dtype, verify=verify).open(key)
        except KeyError:
            raise FileNotFoundError(
                f"feature store entry {key} is not under {cache_dir} on node {socket.gethostname()}: with "
                'features="store" the cache directory must be shared storage mounted at the same path on every '
                'node; mount it there, or use features="object" (--ray-features object).'
            ) from None
    return part


def _train_unit(task_name: str, task_path: str, seed: int, params: dict, view: str, start: int, end: int,
                *parts: Any) -> list[dict]:
    """Training unit: SentEval result dicts of probes ``start:end`` of ``view`` on ``task_name``."""
    task = _worker_task(task_name, task_path, seed)
    opened = [_open_part(p) for p in parts]
    feats = opened[0] if len(opened) == 1 else _JoinedFeatures(opened)
    run_params = apply_defaults(params)
    run_params.current_task = task_name
    emb = task.embed(run_params, StoreBatcher(feats, view, slice(start, end)))
    results = evaluate_many(task, emb, run_params, progress=False, device=_worker_device(run_params.device))
    return [{k: v for k, v in r.items() if k != "yhat"} for r in results]


# ------------------------------------------------------------------------------------------------ driver side


@dataclass
class RayBackend:
    """The Ray backend and its settings; ``sweep(..., backend="ray")`` uses the defaults.

    Attributes
    ----------
    address : cluster to join (``host:port``, ``ray://host:port`` or ``auto``); default ``$RAY_ADDRESS``, else a
        local cluster for the duration of the sweep.
    features : ``"store"`` or ``"object"`` (module docstring); default ``"store"`` when the FeatureStore is on disk.
    shard_size : sentences per encoding unit (rounded down to a multiple of the encoding batch size). A task with
        fewer sentences is one unit.
    probes_per_unit : most probes per training unit (fewer where the sweep's memory budget says so). Larger stacks
        train faster per probe (the batched trainer's per-step cost is shared); smaller ones give more parallel units.
    train_units_per_gpu : training units sharing one GPU (:func:`unit_resources`).
    max_retries : reruns of a unit whose worker died.
    connect_timeout_s : how long to wait for the cluster's port to answer.
    """

    address: str | None = None
    features: str | None = None
    shard_size: int = 20_000
    probes_per_unit: int = 64
    train_units_per_gpu: int = 4
    max_retries: int = 3
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.features is not None and self.features not in FEATURE_TRANSPORTS:
            raise ValueError(f"features={self.features!r} is not one of {', '.join(FEATURE_TRANSPORTS)}.")
        for name in ("shard_size", "probes_per_unit", "train_units_per_gpu"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RayBackend({name}={value!r}): give a positive int.")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"RayBackend(max_retries={self.max_retries!r}): give an int >= 0.")

    def run(self, units: Sequence[PendingUnit], context: RunContext) -> dict[tuple[str, str], Any]:
        """Compute ``units`` on the cluster; write each unit file as its last probe finishes; return the frames
        (the contract of :mod:`senteval_anatomy.sweeping.backends`).

        Returns ``{(task, view): rows}`` for every unit given, in the layout and order of the local backend. With
        ``context.resume`` the finished training units of an interrupted run (``.parts`` folders) are kept, else
        discarded.
        """
        encoder, run_params, pooling, limit, store = (context.encoder, context.run_params, context.pooling,
                                                      context.limit, context.store)
        memory_budget_gb, progress, encode_batch_size = context.memory_budget_gb, context.progress, context.batch_size
        harness, resume = context.harness, context.resume
        import pandas as pd
        from tqdm.auto import tqdm

        if harness != "builtin":
            raise ValueError(f'backend="ray" runs the batched trainer (harness="builtin"), not harness={harness!r}; '
                             "run the reference harnesses with the local backend.")
        if context.findings is not None and context.findings.any():
            raise ValueError('backend="ray" computes the plain table; the findings options (controls, seeds, '
                             "untrained baseline, MDL, ablation) run on the local backend.")
        if not units:
            return {}
        transport = self.features or ("object" if store.memory else "store")
        if transport == "store" and store.memory:
            raise ValueError('features="store" needs a FeatureStore on disk (shared by every node); this sweep\'s '
                             'store is in memory. Use features="object" or give the sweep a cache directory.')
        ray = _import_ray()
        started = connect(self.address, timeout_s=self.connect_timeout_s)
        try:
            cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
            encode_fn = ray.remote(_encode_unit).options(
                max_retries=self.max_retries, **unit_resources("encode", cluster_gpus))
            train_fn = ray.remote(_train_unit).options(
                max_retries=self.max_retries,
                **unit_resources("train", cluster_gpus, train_units_per_gpu=self.train_units_per_gpu))
            # absolute paths: workers on other nodes do not share the driver's working directory
            store_spec = (None if store.memory else str(Path(store.cache_dir).resolve()), store.dtype, store.verify)
            task_path = str(Path(run_params["task_path"]).resolve())
            params = dict(run_params, task_path=task_path)
            enc_box: list[Any] | None = None

            frames: dict[tuple[str, str], dict[int, Any]] = {}  # unit -> {start: rows}
            sizes: dict[tuple[str, str], int] = {}
            paths: dict[tuple[str, str], Path | None] = {}
            unit_keys: dict[tuple[str, str], dict] = {}
            jobs: dict[Any, tuple[str, tuple[str, str], int, int]] = {}
            n_encode = n_probes = 0
            by_task: dict[str, list[PendingUnit]] = {}
            for u in units:
                by_task.setdefault(u.task, []).append(u)
            for task_name, task_units in by_task.items():
                task = load_task(task_name, task_path, seed=run_params["seed"])
                pair = task.spec.pair
                todo: list[tuple[tuple[str, str], int, int]] = []
                for u in task_units:
                    key = (u.task, u.view)
                    probes = probe_index(encoder, u.view)
                    sizes[key], paths[key] = len(probes), u.path
                    if not resume and u.path is not None:
                        shutil.rmtree(_parts_dir(u.path), ignore_errors=True)
                    frames[key] = _read_parts(u.path, u.key, len(probes))
                    unit_keys[key] = u.key
                    dim = encoder.head_dim if u.view == "heads" else encoder.hidden_size
                    per_unit = min(self.probes_per_unit, probe_chunk_size(len(task.samples), len(probes), dim, pair,
                                                                     memory_budget_gb * 1024**3))
                    done = [(a, a + len(df)) for a, df in frames[key].items()]
                    todo += [(key, a, b) for a, b in missing_ranges(len(probes), done, per_unit)]
                if not todo:
                    continue
                if enc_box is None:
                    enc_box = [_put_on_cpu(ray, encoder)]
                uniq = sorted(set(" ".join(s) for s in task.samples))
                shards = self._shards(encoder, uniq, limit, encode_batch_size)
                enc_refs = [encode_fn.remote(enc_box, shard, pooling, limit, encode_batch_size, store_spec, transport)
                            for shard in shards]
                for ref in enc_refs:
                    jobs[ref] = ("encode", (task_name, ""), 0, 0)
                n_encode += len(enc_refs)
                for key, a, b in todo:
                    ref = train_fn.remote(task_name, task_path, run_params["seed"], params, key[1], a,
                                          b, *enc_refs)
                    jobs[ref] = ("train", key, a, b)
                    n_probes += b - a
                del task

            def finish(key: tuple[str, str]) -> None:
                """All probes of a result unit are done: write its unit file (the local backend's bytes)."""
                parts = frames[key]
                df = pd.concat([parts[a] for a in sorted(parts)], ignore_index=True)
                if len(df) != sizes[key]:  # pragma: no cover - guarded by missing_ranges
                    raise RuntimeError(f"ray backend: unit {key} has {len(df)} of {sizes[key]} rows")
                path = paths[key]
                if path is not None:
                    write_unit(path, unit_keys[key], df)
                    shutil.rmtree(_parts_dir(path), ignore_errors=True)
                result[key] = df

            result: dict[tuple[str, str], Any] = {}
            resumed = sum(len(df) for parts in frames.values() for df in parts.values())
            if resumed and progress:
                print(f"ray: resuming, {resumed} probe result(s) already on disk, {n_probes} to train",
                      file=sys.stderr)
            for key in frames:
                if sum(len(df) for df in frames[key].values()) == sizes[key]:
                    finish(key)  # every probe was in the parts of an interrupted run
            enc_bar = tqdm(total=n_encode, desc="encode (ray)", unit="shard", disable=not progress or not n_encode)
            bar = tqdm(total=n_probes, desc="probes (ray)", unit="probe", disable=not progress or not n_probes)
            try:
                pending = list(jobs)
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1)
                    ref = ready[0]
                    kind, key, a, b = jobs.pop(ref)
                    try:
                        value = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # a unit's own error: raise it as itself
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, Exception):
                            raise cause from None
                        raise
                    if kind == "encode":
                        enc_bar.update(1)
                        if enc_bar.n == n_encode:
                            enc_bar.close()  # every shard encoded: leave the terminal to the probes bar
                        continue
                    probes = probe_index(encoder, key[1])[a:b]
                    df = result_rows(encoder, unit_keys[key], probes, value, run_params)
                    path = paths[key]
                    if path is not None:
                        write_unit(_parts_dir(path) / f"{a:06d}-{b:06d}.json", _part_key(unit_keys[key], a, b), df)
                    frames[key][a] = df
                    bar.update(b - a)
                    if sum(len(d) for d in frames[key].values()) == sizes[key]:
                        finish(key)
            except BaseException:
                for ref in jobs:
                    ray.cancel(ref)
                raise
            finally:
                bar.close()
                enc_bar.close()
        finally:
            if started:
                ray.shutdown()
        return result

    def _shards(self, encoder: Any, uniq: list[str], limit: int, batch_size: int) -> list[list[str]]:
        """The task's unique sentences cut into encoding shards (:func:`shard_bounds`) in the encoder's batch order."""
        bounds = shard_bounds(len(uniq), batch_size, self.shard_size)
        if len(bounds) == 1:
            return [uniq]
        ids, _ = tokenize(encoder, uniq, limit)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")  # the order iter_encode batches in (uniq is sorted)
        return [[uniq[i] for i in order[a:b]] for a, b in bounds]


def _parts_dir(unit_path: Path) -> Path:
    return unit_path.with_name(unit_path.stem + _PARTS_SUFFIX)


def _part_key(key: dict, start: int, end: int) -> dict:
    """The key of a part: its unit's key and the probes it holds."""
    return dict(key, probes=[start, end])


def _read_parts(unit_path: Path | None, key: dict, n_probes: int) -> dict[int, Any]:
    """Finished training units of a result unit, ``{first probe: rows}``, from an earlier (interrupted) run.

    A part is merged only when the key inside it is this unit's key with the probe range its name says, it holds one
    row per probe of that range, and the range lies inside the unit without overlapping a part already taken (an
    interrupted run with another chunk size leaves overlapping parts). Anything else is named in a
    :class:`~senteval_anatomy.sweeping.identity.UnitFileWarning` and its probes are trained again."""
    import warnings

    if unit_path is None or not _parts_dir(unit_path).is_dir():
        return {}
    out: dict[int, Any] = {}
    end = 0
    for f in sorted(_parts_dir(unit_path).glob("*.json")):
        a, _, b = f.stem.partition("-")
        if not (a.isdigit() and b.isdigit() and int(b) > int(a)):
            continue
        start, stop = int(a), int(b)
        if start < end or stop > n_probes:
            warnings.warn(f"partial result {f}: probes {start}..{stop - 1} overlap another part or lie outside the "
                          f"unit's {n_probes} probes; it is not merged and they are trained again", UnitFileWarning,
                          stacklevel=2)
            continue
        df = read_unit(f, _part_key(key, start, stop))
        if df is not None and len(df) == stop - start:
            out[start] = df
            end = stop
    return out


def _put_on_cpu(ray: Any, encoder: Any) -> Any:
    """``ray.put`` the encoder with its weights on the CPU, so any worker (GPU or not) can load it."""
    device = encoder.device
    if getattr(device, "type", "cpu") == "cpu":
        return ray.put(encoder)
    import torch

    encoder.model.to("cpu")
    encoder.device = torch.device("cpu")
    try:
        return ray.put(encoder)
    finally:
        encoder.model.to(device)
        encoder.device = device


#: This file's backend (:mod:`senteval_anatomy.sweeping.backends`: one file per backend).
BACKEND = RayBackend
