#!/bin/sh
# Chain G: the paper's full-length LeNet-300-100 protocol (50,000 iterations per
# round, evaluated every 1,000) on the JAX backend, one XLA thread per search,
# 50 steps per compiled call (same results as 1, less overhead).  One chain per seed:
#   sh experiments/run_g.sh 0 & sh experiments/run_g.sh 1 &
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
run() {
  timeout 14400 nice -n 10 python experiments/lenet_mnist.py --steps 50000 --eval-every 1000 \
    --steps-per-execution 50 "$@"
  echo "$(date +%T) done rc=$? $*"
}
for seed in "$@"; do
  run --strategy rewind --seed "$seed"
  run --strategy rewind --seed "$seed" --early-bird
  run --strategy reinit --seed "$seed"
done
