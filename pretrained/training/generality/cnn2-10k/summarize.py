"""Compacts l2o eval folders (report.json, runs.csv) into summary.json and per-seed curves every 100 steps."""
import csv, json, sys, os
out = {}
with open("curves-every-100.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["folder", "seed", "step", "loss"])
    for d in sys.argv[1:]:
        r = json.load(open(os.path.join(d, "report.json")))
        res = r["results"][0]
        out[d] = {"command": r["command"], **{k: v for k, v in res.items() if not (isinstance(v, (list, dict)) and len(json.dumps(v)) > 2000)}}
        for x in csv.DictReader(open(os.path.join(d, "runs.csv"))):
            if int(x["step"]) % 100 == 0: w.writerow([d, x["seed"], x["step"], x["loss"]])
json.dump(out, open("summary.json", "w"), indent=1)
