#!/usr/bin/env bash
# Meta-trains the Fig. 8 ablation checkpoints (HyperAdam §5.4): ITERATIONS (default 3 150, as long as the shipped
# HyperAdam) each on the base MLP with the paper's protocol, seed 0. Resumable: a variant with a `done` marker is
# skipped, one with a last.safetensors continues. Usage: [ITERATIONS=N] pretrained/ablations/train.sh RUNS_DIR
# [L2O_COMMAND] [VARIANT ...] (all variants when none is named), then copy RUNS_DIR/NAME/best-validation.safetensors
# to pretrained/ablations/hyperadam-NAME.safetensors. ITERATIONS=300 trained the earlier set
# (../training/ablations-300/) and the authors'-code variants (../training/code-variants/).
set -u
iterations=${ITERATIONS:-3150}
runs=${1:?give a folder for the runs}
l2o=${2:-l2o}
shift 2 2>/dev/null || shift $#
only=" $* "
mkdir -p "$runs"
run() {
  local name=$1; shift
  # Not asked for, or finished in this folder: nothing to do.
  [ "$only" = "  " ] || [[ "$only" == *" $name "* ]] || return 0
  [ -f "$runs/$name/done" ] && return
  if [ -f "$runs/$name/last.safetensors" ]; then
    $l2o meta-train --resume "$runs/$name" -n "$iterations" --threads 1 >> "$runs/$name.out" 2>&1
  else
    $l2o meta-train "$@" -t mlp -n "$iterations" --threads 1 --validate-every 50 --checkpoint-every 25 --seed 0 --out "$runs/$name" > "$runs/$name.out" 2>&1
  fi
  # Done only when all iterations are in the log (an interrupted run exits cleanly too).
  [ "$(tail -1 "$runs/$name/log.csv" 2>/dev/null | cut -d, -f1)" = "$iterations" ] && touch "$runs/$name/done"
}
# The unablated rule. `l2o reproduce fig8` compares with the shipped pretrained/hyperadam.safetensors instead: iteration
# 3 150 of a 12 000-iteration run of this command (../training/hyperadam-paper-fixed/), selected the same way.
run full -o hyperadam
run no-lstm -o hyperadam:lstm=false
run no-preprocess -o hyperadam:preprocess=false
run neither -o hyperadam:lstm=false,preprocess=false
run no-rs -o hyperadam --no-random-scaling
run no-cc -o hyperadam --no-convex
run no-tricks -o hyperadam --tricks false
run j1 -o hyperadam:j=1
run j5 -o hyperadam:j=5
run j10 -o hyperadam:j=10
run j15 -o hyperadam:j=15
run j25 -o hyperadam:j=25
run j35 -o hyperadam:j=35
# Not Fig. 8: the authors' code's departures from the paper (docs/methods/hyperadam.md), one at a time and together,
# trained the same way so each compares with `full`.
run code-mean-before -o hyperadam --meta-loss mean-before
run code-convex -o hyperadam --convex-clip 10 --convex-init normal:0
run code-trainer -o hyperadam --meta-loss mean-before --convex-clip 10 --convex-init normal:0
run code-state-norm -o hyperadam:state-norm=true
run code-all -o hyperadam:state-norm=true --meta-loss mean-before --convex-clip 10 --convex-init normal:0
