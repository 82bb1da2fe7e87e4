#!/bin/sh
# Chain E (0.1.0): everything on the current data pipeline.
#  1. rearrange for seed 1 (every control then has two seeds);
#  2. seed-0 rewind and reinit again, so that all seed-0 columns share one data order;
#  3. one-shot at 51.3 / 21.1 / 8.7 % for seeds 0 and 1;
#  4. a third seed (2) of the main comparison.
# Each search is resumable; `timeout` guards against the rare hang at interpreter
# exit (README, "Library issues" 2): a search that wrote its results is not rerun.
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
run() {
  timeout 2400 nice -n 10 python experiments/lenet_mnist.py "$@"
  echo "$(date +%T) done rc=$? $*"
}
run --strategy rearrange --seed 1
run --strategy rewind --seed 0
run --strategy reinit --seed 0
for seed in 0 1; do for r in 3 7 11; do
  run --strategy rewind --seed $seed --rounds $r --one-shot
done; done
for s in rewind reinit random_prune rearrange; do
  run --strategy $s --seed 2
done
