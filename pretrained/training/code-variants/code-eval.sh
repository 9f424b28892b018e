#!/usr/bin/env bash
# Evaluates the authors'-code variants against the control `full` on four tasks, 100 runs, seeds 0-99.
# Usage: code-eval.sh OUT CHECKPOINT... (L2O names the l2o command; default `l2o`).
l2o=${L2O:-l2o}
out=$1; shift
mkdir -p "$out"
for t in mlp mlp:layers=3 mlp:layers=4 lstm; do
  args=()
  for c in "$@"; do args+=(-o "hyperadam:checkpoint=$c"); done
  $l2o eval -t $t "${args[@]}" --runs 100 --steps 100 --threads 1 --no-test --out "$out/$t" --force > "$out/$t.out" 2>&1
done
