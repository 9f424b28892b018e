#!/bin/bash
# The seeds on which pretrained-mix diverged on CNN-2 over 2 000 steps (0, 5, 7), with the gamma-min=0.999 copy.
for s in 0 5 7; do
/work/pub4/L2O.Cli eval -t cnn2 -o hyperadam:checkpoint=/work/exp/mix-g0.999.safetensors --runs 1 --steps 2000 --seed $s --threads 1 --out seed$s > seed$s.log 2>&1
done
echo done > DONE
