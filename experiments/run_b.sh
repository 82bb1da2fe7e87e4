#!/bin/sh
# Chain B (after chain A): one-shot at four sparsities, then the reset controls.
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
for r in 3 7 11; do
  nice -n 10 python experiments/lenet_mnist.py --strategy rewind --seed 0 --rounds $r --one-shot || exit 1
done
nice -n 10 python experiments/lenet_mnist.py --strategy continue --seed 0 --rounds 10 || exit 1
nice -n 10 python experiments/lenet_mnist.py --strategy rewind --seed 0 --rounds 10 --rewind-to 100 || exit 1
