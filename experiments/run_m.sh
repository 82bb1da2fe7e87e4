#!/bin/sh
# Chain M: cheap tickets (section 9), after chain L: the random-subset control of
# data-efficient IMP (seed 0, 1,000 iterations), LeNet-300-100 at 3.6 % with longer trainings:
# 3,000 iterations (seed 2's IMP, learned masks and one-shot; one-shot for seeds 0 and 1, whose
# IMP and learned tickets chain K stored), 10,000 iterations (seeds 0, 1 and 2) and the paper's
# 50,000 iterations (IMP, learned masks, one-shot at 3.6 %):
#   sh experiments/run_m.sh
# A ticket already in results/cheap_tickets.jsonl is skipped, so the chain resumes.
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3
run() { timeout 7200 nice -n 10 python experiments/cheap_tickets.py "$@"; echo "$(date +%T) rc=$? $*"; }
run --seeds 0 --steps 1000 --eval-every 250 --methods subset_random
run --seeds 2 --steps 3000 --eval-every 150 --rounds 15 --methods imp learned one_shot
run --seeds 0 1 --steps 3000 --eval-every 150 --rounds 15 --methods one_shot
run --seeds 0 1 2 --steps 10000 --eval-every 1000 --rounds 15 --methods imp learned one_shot
run --seeds 0 1 2 --steps 50000 --eval-every 1000 --rounds 15 --methods learned one_shot imp
