#!/usr/bin/env bash
# Evaluates the authors'-code variants against the control `full` on four tasks, 100 runs, seeds 0-99.
out=$1; shift
for t in mlp mlp:layers=3 mlp:layers=4 lstm; do
  args=()
  for c in "$@"; do args+=(-o "hyperadam:checkpoint=$c"); done
  /work/pub35/L2O.Cli eval -t $t "${args[@]}" --runs 100 --steps 100 --threads 1 --no-test --out "$out/$t" --force > "$out/$t.out" 2>&1
done
