#!/bin/bash
# CNN-2 over 2 000 steps (Fig. 6's middle row): Adam swept over 2 000 steps on seeds from 100 000, then 10 runs (seeds 0-9) each.
L2O="dotnet /work/pub3/L2O.Cli.dll"
cd /work/exp/cnn2-2k
$L2O sweep -t cnn2 -o adam --lr-min 0.0007 --lr-max 0.011 --runs 2 --seed 100000 --steps 2000 --threads 1 --out sweep-adam > sweep-adam.log 2>&1
$L2O eval -t cnn2 -o hyperadam:checkpoint=pretrained-mix --runs 10 --steps 2000 --seed 0 --threads 1 --out eval-mix > eval-mix.log 2>&1
echo done > DONE
