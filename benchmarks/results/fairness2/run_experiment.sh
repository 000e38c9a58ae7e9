#!/usr/bin/env bash
# Fairness of SNL linearization, second round (docs/fairness.md): plain vs the loss-gap penalty
# vs the per-group drop constraint on group-imbalanced Fashion-MNIST (classes 5-9 at 10 %), five
# seeds, budgets 3000 / 1000 / 300 kept sites of the embedded network. Run from the repository
# root:
#
#     bash benchmarks/results/fairness2/run_experiment.sh [WORKDIR]      # default /tmp/fair2s
#     SEEDS="3 4" JOBS=2 bash benchmarks/results/fairness2/run_experiment.sh /tmp/fair2s
#
# SEEDS (default 0 1 2 3 4): the seeds to run (finished runs in WORKDIR are kept, so seeds can be
# added later; the audit and summary cover every seed in WORKDIR). JOBS (default 2): seeds run at
# once. NOTE: an extra line for the summary (how the seeds were run). ARCH (default resnet-small):
# the network; the budgets are scaled to its site count by the driver (resnet18: 2232 / 7439 /
# 22316 sites). MODEL_SET: architecture overrides, e.g. "stem_stride=2" (the repository's
# ResNet-18 elsewhere: 28 096 sites, budgets 578 / 1925 / 5776). Results in
# benchmarks/results/fairness2/<label>, label = $ARCH, or e.g. resnet18-stem_stride2 with
# MODEL_SET. METHODS (default all three): run only these (finished runs are kept: delete a
# method's run directories in WORKDIR to run it again). NICE (default 10): the processes'
# niceness. KEEP: an earlier audit.json of the experiment whose runs not re-run here are kept in
# the audit (the driver's --keep-from; re-run teachers must reproduce it exactly).
# FINETUNE_EPOCHS (default 3): fine-tuning epochs of every method; BUDGETS (default "3000 1000
# 300"): the budgets to run; OUT: the results directory (default benchmarks/results/fairness2/<label>).
#
# Scaled down to fit a shared 2-core machine (see README.md here): every training phase uses a
# fixed 6 000-image subset of the imbalanced training set (per seed), validation the first 2 500
# validation images; teacher 8 epochs, SNL search 2 epochs (shared by the budgets of a seed),
# fine-tuning 3 epochs. One process per seed, one torch thread each, niced.
set -euo pipefail
W=${1:-/tmp/fair2s}
mkdir -p "$W"
PY="$(pwd)/.venv/bin/python"
ARCH=${ARCH:-resnet-small}
LABEL=$ARCH
SET=()
for kv in ${MODEL_SET:-}; do SET+=(--model-set "$kv"); LABEL="$LABEL-${kv%%=*}${kv#*=}"; done
OUT=${OUT:-benchmarks/results/fairness2/$LABEL}
ARGS=(--arch "$ARCH" ${SET[@]+"${SET[@]}"} --teacher-epochs 8 --search-epochs 2 --finetune-epochs "${FINETUNE_EPOCHS:-3}" --train-subset 6000
      --val-subset 2500 --penalty-dual-lr 0.1 --drop-dual-lr 0.3 --drop-tolerance 0 --drop-dual-steps 4 --budgets ${BUDGETS:-3000 1000 300} --work "$W")
JOBS=${JOBS:-2}
for s in ${SEEDS:-0 1 2 3 4}; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  OMP_NUM_THREADS=1 nice -n "${NICE:-10}" "$PY" benchmarks/fairness_experiment.py "${ARGS[@]}" --seeds "$s" \
      ${METHODS:+--methods $METHODS} --results "$W/progress-$LABEL-seed$s" > "$W/$LABEL-seed$s.log" 2>&1 &
done
wait
# The audit of all finished runs (test split, groups = classes; the two-group view and the
# target check are computed from it by the summary), and the runs' metrics.
"$PY" benchmarks/fairness_experiment.py "${ARGS[@]}" --results "$OUT" --audit-only ${KEEP:+--keep-from "$KEEP"}
mkdir -p "$OUT/runs"
for d in "$W/$LABEL"/seed*/*/metrics.json; do
  r="$OUT/runs/$(basename "$(dirname "$(dirname "$d")")")-$(basename "$(dirname "$d")")"
  mkdir -p "$r" && cp "$d" "$r/"
done
"$PY" benchmarks/fairness_summary.py ${NOTE:+--note "$NOTE"} "$OUT/audit.json" > "$OUT/summary.md"
