#!/usr/bin/env bash
# Generality check of HyperAdam checkpoints on tasks that no issue lists and no training run saw.
# Per task: Adam's rate tuned by `l2o sweep` (3 runs, seeds 100000..., disjoint from evaluation),
# then `l2o eval` of Adam at that rate and each checkpoint, RUNS runs (default 10), seeds 0..RUNS-1.
# Usage: run.sh L2O OUT CHECKPOINT... (L2O: the l2o executable; each CHECKPOINT a HyperAdam file or pretrained[-NAME],
# or a whole optimizer specification such as rnnprop:checkpoint=FILE)
set -euo pipefail
l2o=$1; out=$2; shift 2
# TASKS="task|steps ..." replaces the default list (e.g. the 1 000-step runs in results-1000/).
runs=${RUNS:-10}
if [[ -n "${TASKS:-}" ]]; then read -r -a tasks <<< "$TASKS"; else tasks=(
  "mlp:dataset=fashion-mnist|100"
  "cnn1:dataset=fashion-mnist|100"
  "mlp:hidden=100|100"
  "mlp:batch=32|100"
  "mlp:activation=relu,layers=2,hidden=50|100"
  "lstm:hidden=40|100"
  "mlp|500"
); fi
mkdir -p "$out"
for entry in "${tasks[@]}"; do
  task=${entry%|*}; steps=${entry#*|}
  name=$(echo "$task-$steps" | sed 's/[:=,]/_/g')
  [[ -f "$out/$name/report.json" ]] && continue
  # A finished sweep is reused: its rate does not depend on the checkpoints evaluated.
  grep -q 'best: adam:lr=' "$out/$name-sweep.log" 2>/dev/null ||
    "$l2o" sweep -t "$task" -o adam --lr-min 0.001 --lr-max 0.5 --runs 3 --steps "$steps" --seed 100000 --threads 1 --out "$out/$name-sweep" --force > "$out/$name-sweep.log" 2>&1
  lr=$(grep -o 'best: adam:lr=[0-9.eE-]*' "$out/$name-sweep.log" | sed 's/best: adam:lr=//')
  opts=(-o "adam:lr=$lr")
  for c in "$@"; do if [[ $c == *:* ]]; then opts+=(-o "$c"); else opts+=(-o "hyperadam:checkpoint=$c"); fi; done
  "$l2o" eval -t "$task" "${opts[@]}" --runs "$runs" --steps "$steps" --seed 0 --threads 1 --out "$out/$name" --force > "$out/$name.log" 2>&1
  echo "$task ($steps steps): adam lr $lr"
done
