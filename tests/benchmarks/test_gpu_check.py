"""benchmarks/gpu_check.sh: its shell is valid, bad arguments are one line and exit 2, and the CPU dry
run runs the measurement code end to end and prints its figures as one JSON line (slow)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


def test_the_script_parses_and_rejects_unknown_arguments():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    r = subprocess.run(["bash", str(SCRIPT), "--gpus=8"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "gpu_check: unknown argument '--gpus=8' (allowed: --cpu-dry-run, --help)"
    help_text = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True).stdout
    assert "--cpu-dry-run" in help_text and "GPU-hours" in help_text


@pytest.mark.slow
def test_cpu_dry_run_measures_and_estimates(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT), "--cpu-dry-run"], capture_output=True, text=True, timeout=600,
                       env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "SELFSTUDY_THREADS": "1",
                            "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["benchmark"] == "gpu_check" and out["dry_run"] is True and out["device"] == "cpu"
    assert out["train"]["images_per_s"] > 0 and out["finetune_cell"]["steps"] == 10
    est = out["paper_estimate"]
    assert est["cells"] == est["pretrain_cells"] + est["downstream_cells"] + est["check_cells"] > 1000
    assert est["gpu_hours"] > 0 and abs(sum(est["by_kind"].values()) - est["gpu_hours"]) < 0.2
    assert "DRY RUN" in est["how"]
