#!/bin/bash
# usage: evalall.sh NAME FILE ; writes ev/NAME-{v100,v500,t100}
P=${L2O:-l2o}   # the CLI (a published copy was used: L2O=/work/pub31/L2O.Cli)
n=$1; f=$2
$P eval -t mlp -o hyperadam:checkpoint=$f --runs 10 --steps 100 --seed 1000000011 --threads 1 --no-test --out ev/$n-v100 > /dev/null 2>&1
$P eval -t mlp -o hyperadam:checkpoint=$f --runs 10 --steps 500 --seed 1000000021 --threads 1 --no-test --out ev/$n-v500 > /dev/null 2>&1
$P eval -t mlp -o hyperadam:checkpoint=$f --runs 100 --steps 100 --seed 0 --threads 1 --no-test --out ev/$n-t100 > /dev/null 2>&1
python3 - $n <<'P'
import csv,sys,statistics as st
n=sys.argv[1]
def val(d):
    r=[float(x['mean']) for x in csv.DictReader(open(f'ev/{n}-{d}/curves.csv')) if int(x['step'])>=1]; return sum(r)/len(r)
runs={}
for x in csv.DictReader(open(f'ev/{n}-t100/runs.csv')): runs[x['run']]=float(x['loss'])
v=list(runs.values()); se=st.stdev(v)/len(v)**0.5
print(f"{n}: val100(seed 1e9+11) {val('v100'):.4f}  val500(seed 1e9+21) {val('v500'):.4f}  final100 over 100 runs {st.mean(v):.4f} ± {se:.4f}")
P
