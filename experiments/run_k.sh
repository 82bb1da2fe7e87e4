#!/bin/sh
# Chain K: cheap tickets (section 9) in the reduced protocol that was run: LeNet-300-100 at
# 1,000 iterations per training (evaluation every 250) for the given seeds, and the
# Conv-2-shaped network (8 rounds, 300 iterations per training) for the first seed:
#   sh experiments/run_k.sh 0 1
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
COMMON="--steps 1000 --eval-every 250 --early-bird-rounds 15"
METHODS="imp learned learned_half one_shot subset snip synflow early_bird"
for seed in "$@"; do
  timeout 7200 nice -n 10 python experiments/cheap_tickets.py --seeds "$seed" $COMMON \
    --methods $METHODS
  echo "$(date +%T) done rc=$? cheap tickets seed $seed"
done
timeout 7200 nice -n 10 python experiments/cheap_tickets.py --seeds "$1" $COMMON --methods imp \
  --conv --conv-rounds 8 --conv-steps 300 --conv-eval-every 100 \
  --conv-methods imp learned one_shot
echo "$(date +%T) done rc=$? conv2 seed $1"
timeout 7200 nice -n 10 python experiments/cheap_tickets.py --seeds "$@" $COMMON --rounds 15 \
  --methods learned_long
echo "$(date +%T) done rc=$? learned_long $*"
