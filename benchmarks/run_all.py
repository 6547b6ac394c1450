"""Run every benchmark in turn (each prints its table and writes JSON under benchmarks/results/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_solve_qp.py", "bench_training_step.py", "bench_trajopt_node.py"]


def main() -> int:
    failed = []
    for script in SCRIPTS:
        print(f"==> {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)]).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
