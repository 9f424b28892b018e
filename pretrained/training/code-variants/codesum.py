import json,os,sys,math
root=sys.argv[1]
tasks=['mlp','mlp:layers=3','mlp:layers=4','lstm']
table={}
for t in tasks:
    p=os.path.join(root,t,'report.json')
    if not os.path.exists(p): continue
    for r in json.load(open(p))['results']:
        name=r['spec'].split('checkpoint=')[1].split('/')[-2]
        f=r['final_loss']; se=f['std']/math.sqrt(f['n']) if f['n'] else float('nan')
        table.setdefault(name,{})[t]=f"{f['mean']:.3f} ± {se:.3f}"+(f" ({r['runs_diverged']} diverged)" if r['runs_diverged'] else "")
print('| checkpoint | '+' | '.join(tasks)+' |'); print('|---'*(len(tasks)+1)+'|')
for n,row in table.items(): print(f"| {n} | "+' | '.join(row.get(t,'–') for t in tasks)+' |')
