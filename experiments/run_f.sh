#!/bin/sh
# Chain F: rerun on the current library every search of the earlier chains that
# the tables pair with chain E's runs (their dense round differed: an earlier data
# pipeline), so each seed's columns share one dense run.
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
run() {
  timeout 2400 nice -n 10 python experiments/lenet_mnist.py "$@"
  echo "$(date +%T) done rc=$? $*"
}
for s in rewind reinit random_prune; do run --strategy $s --seed 1; done
run --strategy random_prune --seed 0
run --strategy rearrange --seed 0
run --strategy continue --seed 0 --rounds 10
run --strategy rewind --seed 0 --rounds 10 --rewind-to 100
