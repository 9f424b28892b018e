#!/usr/bin/env bash
# Evaluates checkpoints on four tasks, 100 runs, seeds 0-99 (as pretrained/training/code-variants/code-eval.sh).
out=$1; shift
mkdir -p "$out"
for t in mlp:layers=3 mlp:layers=4 mlp lstm; do
  args=()
  for c in "$@"; do args+=(-o "hyperadam:checkpoint=$c"); done
  /work/pub2/L2O.Cli eval -t $t "${args[@]}" --runs 100 --steps 100 --threads 1 --no-test --out "$out/$t" --force > "$out/$t.out" 2>&1
done
