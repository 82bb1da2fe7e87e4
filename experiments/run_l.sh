#!/bin/sh
# Chain L: cheap tickets (section 9), what chain K left: the Conv-2-shaped network (15 rounds
# of 300 iterations, evaluated at the end of each, seeds 0 and 1; IMP and learned masks) and
# LeNet-300-100's third seed (seed 2) at 1,000 iterations per training:
#   sh experiments/run_l.sh
# A ticket already in results/cheap_tickets.jsonl is skipped, so the chain resumes.
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3
run() { timeout 7200 nice -n 10 python experiments/cheap_tickets.py "$@"; echo "$(date +%T) rc=$? $*"; }
COMMON="--steps 1000 --eval-every 250 --early-bird-rounds 15"
CONV="--conv --conv-rounds 15 --conv-steps 300 --conv-eval-every 300 --conv-methods imp learned"
run --seeds 0 $COMMON --methods imp $CONV
run --seeds 2 $COMMON --methods imp learned one_shot snip synflow
run --seeds 1 $COMMON --methods imp $CONV
run --seeds 1 2 $COMMON --methods learned_half early_bird
run --seeds 1 2 $COMMON --rounds 15 --methods learned_long
