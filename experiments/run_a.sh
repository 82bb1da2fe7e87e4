#!/bin/sh
# Chain A: the main comparison (seed 0).  Only its rewind run was kept: reinit
# was stopped (it equalled rewind, see README "Library issues" 1) and rerun by run_c.sh.
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
for s in rewind reinit random_prune; do
  nice -n 10 python experiments/lenet_mnist.py --strategy $s --seed 0 || exit 1
done
