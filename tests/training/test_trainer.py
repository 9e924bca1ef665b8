"""The training stage: schedule values, early stopping and best weights, exact resume after SIGKILL,
DDP on two gloo processes against one process, the Dataset path, and imports without scikit-learn,
MNE or braindecode. All on the CPU, on small synthetic data."""

import importlib.util
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neurodecode.training import TrainConfig, Trainer, WarmupCosine, should_compile
from neurodecode.training.data import global_batches, local_batches, stratified_split
from neurodecode.training.schedule import warmup_steps_for

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}


def _load(name):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- learning-rate schedule -----------------------------------------------------------------------

def test_warmup_cosine_values():
    schedule = WarmupCosine(total_steps=10, warmup_steps=2, floor=0.1)
    assert schedule(0) == pytest.approx(0.5)  # (0 + 1) / 2: the first step already moves
    assert schedule(1) == pytest.approx(1.0)  # warmup ends at the peak
    assert schedule(2) == pytest.approx(1.0)  # cosine progress 0
    assert schedule(6) == pytest.approx(0.1 + 0.9 * 0.5)  # progress 4/8: half way down
    assert schedule(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert schedule(10) == pytest.approx(0.1)  # the floor, after the last step
    assert WarmupCosine(10, 2, cosine=False)(7) == 1.0
    assert warmup_steps_for(100, 0.05) == 5 and warmup_steps_for(1, 0.05) == 1 and warmup_steps_for(7, 0.0) == 0
    with pytest.raises(ValueError):
        WarmupCosine(total_steps=3, warmup_steps=4)


def test_trainer_follows_the_schedule_step_by_step():
    # 40 trials, batch 10, no validation: 4 steps per epoch, 12 steps; warmup ceil(0.25 * 12) = 3.
    X = np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32)
    y = np.arange(40) % 2
    torch.manual_seed(0)
    config = TrainConfig(max_epochs=3, batch_size=10, lr=0.02, warmup_fraction=0.25, min_lr_fraction=0.05,
                         val_fraction=0.0, device="cpu")
    result = Trainer(config).fit(nn.Linear(5, 2), X, y)
    expected = WarmupCosine(12, 3, 0.05)
    # The recorded rate is the one after each epoch's last scheduler step: step 4, 8, 12.
    assert [r["lr"] for r in result.history] == pytest.approx([0.02 * expected(s) for s in (4, 8, 12)])
    assert result.history[-1]["lr"] == pytest.approx(0.02 * 0.05)


# -- batches and splits ---------------------------------------------------------------------------

def test_split_is_stratified_seeded_and_batches_merge_a_small_remainder():
    y = np.array([0] * 30 + [1] * 10)
    train, val = stratified_split(y, 0.2, seed=4)
    assert np.bincount(y[val]).tolist() == [6, 2] and len(train) == 32 and not set(train) & set(val)
    assert np.array_equal(stratified_split(y, 0.2, seed=4)[1], val)
    assert not np.array_equal(stratified_split(y, 0.2, seed=5)[1], val)
    assert global_batches(37, 16, 1) == [(0, 16), (16, 32), (32, 37)]  # 5 >= 2 trials: kept
    assert global_batches(33, 16, 1) == [(0, 16), (16, 33)]  # 1 trial: merged into the batch before
    assert global_batches(35, 16, 2) == [(0, 16), (16, 35)]  # 3 < 2 * 2 processes: merged
    shares = local_batches(np.arange(11), 11, rank=1, world_size=2)
    assert [(s.tolist(), n) for s, n in shares] == [([1, 3, 5, 7, 9], 11)]


# -- early stopping ---------------------------------------------------------------------------------

def _overfitting_problem():
    """A separable training set, and a validation set with 20% of its labels flipped.

    Training drives the margin of a linear model up without bound; the validation loss
    ``0.8 log(1 + e^-m) + 0.2 log(1 + e^m)`` is lowest at the margin where sigmoid(m) = 0.8 and
    rises after it, so it falls for some epochs and then rises: the epoch where it turns is known
    to exist, and the run must stop ``patience`` epochs after it with that epoch's weights.
    """
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.5, 64) * np.where(np.arange(64) % 2, 1, -1)
    X, y = x[:, None].astype(np.float32), (x > 0).astype(np.int64)
    xv = rng.uniform(0.5, 1.5, 40) * np.where(np.arange(40) % 2, 1, -1)
    yv = (xv > 0).astype(np.int64)
    yv[:8] = 1 - yv[:8]
    return X, y, xv[:, None].astype(np.float32), yv


@pytest.mark.parametrize("restore_best", [True, False])
def test_early_stopping_restores_the_best_weights(restore_best):
    X, y, Xv, yv = _overfitting_problem()
    torch.manual_seed(0)
    net = nn.Linear(1, 2)
    nn.init.zeros_(net.weight), nn.init.zeros_(net.bias)
    snapshots = {}
    config = TrainConfig(max_epochs=60, batch_size=64, lr=0.05, schedule="constant", warmup_fraction=0.0,
                         weight_decay=0.0, grad_clip=None, patience=4, restore_best=restore_best, device="cpu")
    result = Trainer(config, callbacks=[lambda r, m: snapshots.__setitem__(r["epoch"], m.weight.detach().clone())]
                     ).fit(net, X, y, val=(Xv, yv))
    losses = [r["val_loss"] for r in result.history]
    best = int(np.argmin(losses)) + 1
    assert result.best_epoch == best
    assert 1 < best < len(losses), f"the validation loss must fall then rise: {np.round(losses, 4)}"
    assert losses[-1] > losses[best - 1] + 1e-3
    assert result.stopped_early and len(losses) == best + config.patience < config.max_epochs
    kept = snapshots[best] if restore_best else snapshots[len(losses)]
    assert torch.equal(result.model.weight, kept)
    assert not torch.equal(snapshots[best], snapshots[len(losses)])
    # Accuracy is recorded too; the flipped fifth of the validation labels caps it at 0.8.
    assert max(r["val_accuracy"] for r in result.history) <= 0.8 + 1e-9


def test_monitor_accuracy_and_no_validation():
    X, y, Xv, yv = _overfitting_problem()
    torch.manual_seed(0)
    result = Trainer(TrainConfig(max_epochs=5, batch_size=16, monitor="val_balanced_accuracy", device="cpu")
                     ).fit(nn.Linear(1, 2), X, y, val=(Xv, yv))
    scores = [r["val_balanced_accuracy"] for r in result.history]
    assert result.best_epoch == int(np.argmax(scores)) + 1
    plain = Trainer(TrainConfig(max_epochs=3, val_fraction=0.0, device="cpu")).fit(nn.Linear(1, 2), X, y)
    assert plain.best_epoch is None and plain.n_val == 0 and all(r["val_loss"] is None for r in plain.history)


# -- the Dataset path ---------------------------------------------------------------------------------

def test_dataset_path_equals_the_in_memory_path():
    """A DataLoader over a TensorDataset visits the same batches as direct indexing: same weights."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 2, 6)).astype(np.float32)
    y = (X[:, 0, 0] > 0).astype(np.int64)

    def train(data_on_device, as_dataset):
        torch.manual_seed(2)
        net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
        config = TrainConfig(max_epochs=3, batch_size=8, device="cpu", data_on_device=data_on_device)
        data = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)) if as_dataset else X
        return Trainer(config).fit(net, data, None if as_dataset else y)

    fast, loader, dataset = train(True, False), train(False, False), train("auto", True)
    for other in (loader, dataset):
        for a, b in zip(fast.model.state_dict().values(), other.model.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [r["val_loss"] for r in fast.history] == [r["val_loss"] for r in dataset.history]


# -- checkpoints ------------------------------------------------------------------------------------------

def _worker(checkpoint_dir, out, sleep):
    return [sys.executable, str(HERE / "_resume_worker.py"), str(checkpoint_dir), str(out), str(sleep)]


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    killed_dir, out = tmp_path / "killed", tmp_path / "resumed.pt"
    checkpoint = killed_dir / "checkpoint.pt"
    # The uninterrupted reference runs alongside (one thread each, on its own checkpoint folder).
    reference_out = tmp_path / "reference.pt"
    reference_run = subprocess.Popen(_worker(tmp_path / "reference", reference_out, 0), env=_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # 0.4 s per epoch leaves time to kill the run between its checkpoints.
    proc = subprocess.Popen(_worker(killed_dir, out, 0.4), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    epoch = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists():
            epoch = torch.load(checkpoint, weights_only=False)["epoch"]
            if epoch >= 2:
                break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stdout.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert not out.exists()
    saved = torch.load(checkpoint, weights_only=False)  # whole: written atomically
    interrupted_at = saved["epoch"]
    max_epochs = _load("_resume_worker").MAX_EPOCHS
    assert 2 <= interrupted_at < max_epochs and not saved["finished"]

    subprocess.run(_worker(killed_dir, out, 0), env=_env(), check=True, capture_output=True, timeout=300)
    assert reference_run.wait(timeout=300) == 0, reference_run.stdout.read().decode()[-2000:]
    resumed, reference = torch.load(out, weights_only=False), torch.load(reference_out, weights_only=False)
    assert resumed["resumed_from"] >= interrupted_at and reference["resumed_from"] is None
    assert len(resumed["history"]) == len(reference["history"]) == max_epochs
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in reference["history"]]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed["history"]] == strip
    for name, tensor in reference["state"].items():
        assert torch.equal(resumed["state"][name], tensor), name
    # The weights did train, and differ from their initial values.
    initial = _load("_resume_worker").model().state_dict()
    assert not torch.equal(initial["5.weight"], reference["state"]["5.weight"])


def test_checkpoint_of_another_run_is_refused_and_a_finished_one_is_reused(tmp_path):
    X = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    y = np.arange(30) % 2
    config = TrainConfig(max_epochs=2, batch_size=8, checkpoint_dir=str(tmp_path), device="cpu")
    torch.manual_seed(0)
    first = Trainer(config).fit(nn.Linear(4, 2), X, y)
    again = Trainer(config).fit(nn.Linear(4, 2), X, y)  # finished: the stored result, no training
    assert again.resumed_from == 2 and again.history == first.history
    assert torch.equal(again.model.weight, first.model.weight)
    with pytest.raises(ValueError, match="lr"):
        Trainer(TrainConfig(max_epochs=2, batch_size=8, lr=0.5, checkpoint_dir=str(tmp_path), device="cpu")
                ).fit(nn.Linear(4, 2), X, y)


# -- DDP ----------------------------------------------------------------------------------------------------

def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes_step_like_one_process(tmp_path):
    prefix = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(HERE / "_ddp_worker.py"), str(prefix)]
    # Loopback only: gloo picks its interface from the host name unless told.
    env = {**_env(), "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    worker = _load("_ddp_worker")
    torch.set_num_threads(1)
    try:
        for batch_size, shares in ((11, [[6], [5]]), (6, [[3, 3, 3, 3], [3, 2, 3, 2]])):
            ranks = [torch.load(f"{prefix}-b{batch_size}-rank{r}.pt", weights_only=False) for r in (0, 1)]
            single, seen = worker.run(batch_size, max_epochs=1 if batch_size == 11 else 2)
            # Each process computed its share of every global batch (6 + 5 of 11 trials, unevenly)...
            assert [r["seen"] for r in ranks] == shares and all(r["world_size"] == 2 for r in ranks)
            assert seen == [11] if batch_size == 11 else seen == [6, 5, 6, 5]
            # ... and the step equals one process's on the whole batch, in both processes.
            for r in ranks:
                for name, tensor in single.model.state_dict().items():
                    torch.testing.assert_close(r["state"][name], tensor, rtol=1e-5, atol=1e-6)
                for mine, reference in zip(r["history"], single.history):
                    for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
                        assert mine[key] == pytest.approx(reference[key], rel=1e-5), key
            initial = worker.model().state_dict()
            assert not torch.allclose(initial["1.weight"], single.model.state_dict()["1.weight"])
    finally:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")) or 2)


# -- compile rule, configuration ---------------------------------------------------------------------------

def test_compile_rule():
    assert should_compile("auto", "cuda", False, 300.0, 120.0)
    assert not should_compile("auto", "cuda", False, 60.0, 120.0)
    assert not should_compile("auto", "cuda", False, None, 120.0)  # not timed yet
    assert not should_compile("auto", "cpu", False, 1e6, 120.0)
    assert not should_compile(True, "cuda", True, 1e6, 120.0)  # deterministic runs never compile
    assert should_compile(True, "cpu", False, None, 120.0)


@pytest.mark.parametrize("field, value", [("max_epochs", 0), ("batch_size", 1.5), ("lr", -1.0), ("monitor", "loss"),
                                          ("val_fraction", 1.0), ("compile", 1), ("precision", "fp16"),
                                          ("patience", -1), ("device", None)])
def test_config_refuses_values_out_of_range(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value}).validate()


def test_non_finite_loss_stops_the_run():
    X = np.full((20, 3), np.inf, dtype=np.float32)
    with pytest.raises(FloatingPointError, match="loss"):
        Trainer(TrainConfig(max_epochs=2, val_fraction=0.0, device="cpu")).fit(nn.Linear(3, 2), X, np.arange(20) % 2)


# -- the stage needs torch and numpy only ----------------------------------------------------------------------

BLOCKED = ("sklearn", "scipy", "mne", "braindecode", "moabb", "pandas", "skorch")

IMPORT_CHECK = f"""
import sys
BLOCKED = {BLOCKED!r}
# A None entry makes `import name` raise ImportError, as if the package were not installed, while
# importlib.util.find_spec(name) (torch's compiler probes optional packages) answers None.
for name in BLOCKED:
    sys.modules[name] = None
import numpy as np, torch
from neurodecode.training import Trainer, TrainConfig
X = np.random.default_rng(0).standard_normal((20, 2, 8)).astype(np.float32)
result = Trainer(TrainConfig(max_epochs=2, batch_size=8, device="cpu")).fit(
    torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)), X, np.arange(20) % 2)
loaded = sorted(m for m, module in sys.modules.items() if m.split(".")[0] in BLOCKED and module is not None)
try:
    import sklearn
    print("NOT BLOCKED")
except ImportError:
    pass
print("LOADED", loaded, len(result.history))
"""


def test_training_stage_imports_and_runs_without_sklearn_mne_braindecode():
    run = subprocess.run([sys.executable, "-c", IMPORT_CHECK], env=_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "LOADED [] 2" in run.stdout
