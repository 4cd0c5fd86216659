"""Prints what a rank sees, as one JSON line, and checks its own rank-table entry like HCCL would."""
import json
import os
import subprocess
import sys

out = {"env": {k: v for k, v in os.environ.items()}, "argv": sys.argv[1:], "cwd": os.getcwd(),
       "cpus": sorted(os.sched_getaffinity(0))}
table_path = os.environ.get("RANK_TABLE_FILE")
if table_path:
    with open(table_path) as f:
        table = json.load(f)
    addrs = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    mine = {l.split()[3].split("/")[0] for l in addrs.splitlines()}
    conf = {}
    with open("/etc/hccn.conf") as f:
        for line in f:
            if line.startswith("address_"):
                k, v = line.strip().split("=")
                conf[k.split("_")[1]] = v
    rank = os.environ.get("RANK_ID")
    entry = [(s, d) for s in table["server_list"] for d in s["device"] if d["rank_id"] == rank]
    out["table_entry_found"] = len(entry) == 1
    if entry:
        s, d = entry[0]
        out["server_id_is_mine"] = s["server_id"] in mine
        out["device_ip_matches_hccn_conf"] = conf.get(d["device_id"]) == d["device_ip"]
        out["device_id_matches"] = d["device_id"] == os.environ.get("DEVICE_ID", os.environ.get("ASCEND_DEVICE_ID"))
print("PROBE " + json.dumps(out), flush=True)
