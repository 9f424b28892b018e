# Groups a `perf report -n --stdio --sort dso,symbol` listing (a .txt saved from it, or a perf.data to report) into
# the categories of docs/performance.md, as shares of sample counts. Usage: python3 group.py meta.txt (or a .txt.gz)
import re,sys,subprocess,gzip
cats=[('copies',r'CopyOut|CopyIn|memmove|memset|Memmove'),('products',r'::Product|AccumulateOuter|AccumulateXtY|AccumulateColumns|Gemm`1'),
('adam',r'HyperAdamLanesCell`1\[[^\]]*\]::Adam\b|SigmoidPairs|AdamRows'),('lstm',r'LaneLstm|::Gates|GatesRows|BackwardRows'),
('input',r'Lanes`1|HyperAdamLanesCell|InputLayers|Rows`1'),('kernel',r'\[k\]'),('libtorch',r'libtorch|libgomp|mkl'),('maxpool',r'cpu_max_pool'),
('alloc',r'malloc|_int_free|unlink_chunk|cfree'),('unresolved',r'\[JIT\].*\] 0x'),
('recurrent',r'RecurrentCell|RecurrentSpec|libm\.so')]
out=gzip.open(sys.argv[1],'rt').read() if sys.argv[1].endswith('.txt.gz') else open(sys.argv[1]).read() if sys.argv[1].endswith('.txt') else subprocess.run(['perf','report','-i',sys.argv[1],'-n','--stdio','--sort','dso,symbol'],capture_output=True,text=True).stdout
tot={k:0 for k,_ in cats}; other=0; allc=0
for line in out.splitlines():
    m=re.match(r'\s*[\d.]+%\s+(\d+)\s+(.*)',line)
    if not m: continue
    n=int(m.group(1)); s=m.group(2); allc+=n
    for k,r in cats:
        if re.search(r,s):
            tot[k]+=n
            if k=='libtorch' and 'cpu_max_pool' in s: tot['maxpool']+=n
            break
    else: other+=n
print(sys.argv[1], allc)
for k,_ in cats: print(f"{k} {100*tot[k]/allc:.1f}")
print(f"rest {100*other/allc:.1f}")
