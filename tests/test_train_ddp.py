"""The same `python -m core train` command under torchrun: 2 CPU processes (gloo)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import latent
from core.runs import load_run

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_a_loadable_run(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "core",
        "train",
        "--data",
        "synthetic",
        "--out",
        str(out),
        "--epochs",
        "3",
        "--latent",
        "4",
        "--set",
        "params.n_obs=160",
        "--set",
        "params.n_genes=40",
        "--set",
        "batch_size=32",
        "--json",
    ]
    res = subprocess.run(
        cmd,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=400,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "epoch 3/3" in res.stderr
    assert res.stderr.count("epoch 1/3") == 1  # only rank 0 reports progress
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload["status"]["state"] == "done"
    run = load_run(out)
    hist = run.history
    assert list(hist["epoch"]) == [1, 2, 3]
    assert run.metrics["n_train"] == 128
    mdata = run.load_data()
    z, _ = latent.encode(run, mdata)
    assert z.shape == (160, 4) and np.isfinite(z).all()
