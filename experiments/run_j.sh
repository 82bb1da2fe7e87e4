#!/bin/sh
# Chain J: pruning at initialization (SNIP, GraSP, SynFlow, magnitude, random) at
# 20 / 5 / 1.4 / 0.5 % of the weights, with the sanity checks at 5 %, then the IMP
# ticket down to 0.5 % (24 rounds of 20 %, output 10 %) on the same protocol:
# 3,000 iterations per training, evaluation every 150, JAX backend:
#   sh experiments/run_j.sh 0 1
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
timeout 7200 nice -n 10 python experiments/at_init.py --steps-per-execution 50 --seeds "$@"
echo "$(date +%T) done rc=$? at_init $*"
for seed in "$@"; do
  timeout 7200 nice -n 10 python experiments/lenet_mnist.py --rounds 24 --strategy rewind \
    --steps-per-execution 50 --seed "$seed"
  echo "$(date +%T) done rc=$? rewind r24 seed $seed"
done
