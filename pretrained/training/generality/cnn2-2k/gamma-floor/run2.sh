#!/bin/bash
for s in 1 2 3 4 6 8 9; do
/work/pub4/L2O.Cli eval -t cnn2 -o hyperadam:checkpoint=/work/exp/mix-g0.999.safetensors --runs 1 --steps 2000 --seed $s --threads 1 --out seed$s > seed$s.log 2>&1
done
echo done > DONE2
