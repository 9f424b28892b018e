#!/usr/bin/env bash
# Evaluates the authors'-code variants against the control `full` on four tasks, 100 runs, seeds 0-99: the same
# protocol as the Fig. 8 ablations, so it runs their script. Usage: code-eval.sh OUT CHECKPOINT... (L2O names the l2o command).
exec "$(dirname "$0")/../ablations-long/eval.sh" "$@"
