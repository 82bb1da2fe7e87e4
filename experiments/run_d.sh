#!/bin/sh
# Second seed of the main comparison, and the rearrange control (if time allows).
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
for s in "$@"; do
  nice -n 10 python experiments/lenet_mnist.py --strategy ${s%:*} --seed ${s#*:} || exit 1
done
