"""A sweep — lottery tickets against reinitialised controls over seeds — with its report.

    python examples/sweep_report.py --out sweep_out          # 2 strategies x 2 seeds
    python examples/sweep_report.py --out sweep_out --smoke  # tiny sizes, a few seconds

Writes sweep_out/sweep.yaml, one run directory per job under sweep_out/runs/, the table
(printed and in sweep_out/table.csv) and the paper's plots sweep_out/figures/accuracy.png
and early_stop.png.  Rerunning skips finished runs and resumes unfinished ones.  The same
with the command line:

    keras-lottery sweep sweep_out/sweep.yaml --jobs 2
    keras-lottery report sweep_out/runs --output sweep_out/figures --csv sweep_out/table.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from keras_lottery.runs import directory as runs
from keras_lottery.runs import report, sweep

SPEC = {
    "base": {"model": "lenet_300_100", "rounds": 4, "epochs": 2, "train_size": 2000},
    "grid": {"strategy": ["rewind", "reinit"], "seed": [0, 1]},
    "runs_root": "runs",
}
SMOKE = {"rounds": 1, "epochs": 1, "train_size": 300, "test_size": 200}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="sweep_out", help="folder for everything [sweep_out]")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = {**SPEC, "base": {**SPEC["base"], **(SMOKE if args.smoke else {})}}
    if args.smoke:
        spec["grid"] = {"strategy": ["rewind", "reinit"], "seed": [0]}
    spec_path = out / "sweep.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))

    plan = sweep.load_sweep(spec_path)  # checks every key and value
    runs_root = Path(plan.runs_root)  # resolved against the spec's folder
    for i, config in enumerate(plan.jobs, 1):
        run_dir = runs.prepare_run(config, runs_root)
        print(f"job {i}/{len(plan.jobs)}: {run_dir}", flush=True)
        runs.run(config, run_dir, verbose=0)

    rows = report.summarize(report.load_runs(runs_root))
    print(report.format_table(rows))
    (out / "table.csv").write_text(report.to_csv(rows))
    for figure in report.plot(rows, out / "figures").values():
        print(f"wrote {figure.path} ({', '.join(figure.series)})")


if __name__ == "__main__":
    main()
