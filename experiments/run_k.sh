#!/bin/sh
# Chain K: cheap tickets (section 9), the reduced protocol that was run: LeNet-300-100 at
# 1,000 iterations per training (evaluation every 250), seeds 0 and 1; the learned masks at
# section 8's 3,000 iterations against its stored IMP searches (seeds 0 and 1); the
# Conv-2-shaped network (5 rounds of 200 iterations, evaluated at the end of each, seed 0;
# it did not finish on two shared cores):
#   sh experiments/run_k.sh
# A ticket already in results/cheap_tickets.jsonl is skipped, so the chain resumes.
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
run() { timeout 7200 nice -n 10 python experiments/cheap_tickets.py "$@"; echo "$(date +%T) rc=$? $*"; }
COMMON="--steps 1000 --eval-every 250 --early-bird-rounds 15"
run --seeds 0 1 $COMMON --methods imp learned learned_half one_shot snip synflow early_bird subset
run --seeds 0 1 $COMMON --rounds 15 --methods learned_long
run --seeds 0 1 --steps 3000 --eval-every 150 --rounds 15 --methods learned --imp-from-section-8
run --seeds 0 $COMMON --methods imp --conv --conv-rounds 5 --conv-steps 200 \
  --conv-eval-every 200 --conv-methods imp learned
