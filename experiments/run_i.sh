#!/bin/sh
# Chain I: what happens to the survivors after each pruning, side by side on one
# schedule: rewind to θ0 (Frankle & Carbin), learning-rate rewinding (Renda et al.:
# keep the trained survivors, fresh optimizer, replay the learning-rate schedule)
# and fine-tuning (keep them, retrain at 0.1x the learning rate).  5,000 iterations
# per round (shorter than the paper's 50,000), 10 rounds (Pm 10.7%), JAX backend:
#   sh experiments/run_i.sh 0 1
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
for seed in "$@"; do
  for strategy in rewind lr_rewind finetune; do
    timeout 7200 nice -n 10 python experiments/lenet_mnist.py --steps 5000 --eval-every 250 \
      --steps-per-execution 50 --rounds 10 --strategy "$strategy" --seed "$seed"
    echo "$(date +%T) done rc=$? $strategy seed $seed"
  done
done
