#!/bin/sh
# Chain C: the controls of the main comparison (seed 0).
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
for s in reinit random_prune; do
  nice -n 10 python experiments/lenet_mnist.py --strategy $s --seed 0 || exit 1
done
