#!/usr/bin/env bash
# Evaluates HyperAdam checkpoints on four tasks, 100 runs of 100 steps, seeds 0-99 (the protocol and seeds of
# `l2o reproduce fig8` and ../code-variants/). Usage: eval.sh OUT CHECKPOINT... (L2O names the l2o command).
l2o=${L2O:-l2o}
out=$1; shift
mkdir -p "$out"
for t in mlp:layers=3 mlp:layers=4 mlp lstm; do
  args=()
  for c in "$@"; do args+=(-o "hyperadam:checkpoint=$c"); done
  $l2o eval -t $t "${args[@]}" --runs 100 --steps 100 --threads 1 --no-test --out "$out/$t" --force > "$out/$t.out" 2>&1
done
