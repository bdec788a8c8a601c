#!/usr/bin/env bash
# Benchmark of sandrun-devnet: trivial-job turnaround (submit -> completed status) and
# throughput (jobs/s for N small jobs spread over the workers), against a baseline measured
# in the same run: spawning the same script directly (`python3 main.py`).
#
# Usage: bench/devnet.sh [--workers 3] [--jobs 100] [--samples 20] [--json]
# --json: print one JSON object (the same figures) instead of the table (bench/goals.mjs).
# Needs: cargo, python3. Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKERS=3
JOBS=100
SAMPLES=20
JSON=0
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --samples) SAMPLES="$2"; shift 2 ;;
    --json) JSON=1; shift ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done

cargo build --release -p sandrun-devnet >&2
BIN=${CARGO_TARGET_DIR:-target}/release/sandrun-devnet
# Resolve python3 through any shim (pyenv) once, for the devnet and the baseline alike:
# a bash shim in front of every spawn would dominate both figures.
PYDIR=$(python3 -c 'import os, sys; print(os.path.dirname(os.path.realpath(sys.executable)))')
export PATH="$PYDIR:$PATH"
TMP=$(mktemp -d)
OUT="$TMP/devnet.json"
"$BIN" --workers "$WORKERS" --json --no-rate-limit --data-dir "$TMP/data" >"$OUT" 2>"$TMP/devnet.log" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 1 300); do [ -s "$OUT" ] && break; sleep 0.05; done
[ -s "$OUT" ] || { echo "devnet did not start" >&2; cat "$TMP/devnet.log" >&2; exit 1; }

python3 - "$OUT" "$JOBS" "$SAMPLES" "$TMP" "$JSON" <<'PY'
import http.client, json, os, statistics, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

info = json.load(open(sys.argv[1]))
JOBS, SAMPLES, TMP, JSON_OUT = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
workers = [w["url"].removeprefix("http://") for w in info["workers"]]
CODE = b'print("Hello from Sandrun!")\n'
B = "----devnetBench"
BODY = (f'--{B}\r\nContent-Disposition: form-data; name="files"; filename="main.py"\r\n\r\n').encode() + CODE + \
       (f'\r\n--{B}\r\nContent-Disposition: form-data; name="manifest"\r\n\r\n'
        '{"entrypoint":"main.py","interpreter":"python3"}\r\n' f'--{B}--\r\n').encode()

def call(addr, method, path, body=None, headers=None):
    host, port = addr.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=120)
    c.request(method, path, body=body, headers=headers or {})  # header case kept as given
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data

def submit(addr):
    st, data = call(addr, "POST", "/submit", BODY, {"Content-Type": f"multipart/form-data; boundary={B}"})
    assert st == 200, data
    return json.loads(data)["job_id"]

def wait(addr, jid):
    while True:
        st, data = call(addr, "GET", f"/status/{jid}")
        s = json.loads(data)["status"]
        if s != "queued":
            assert s == "completed", data
            return
        time.sleep(0.002)

def devnet_throughput():
    def one(i):
        a = workers[i % len(workers)]
        wait(a, submit(a))
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(workers) * 2) as ex:
        list(ex.map(one, range(JOBS)))
    return JOBS / (time.perf_counter() - t)

d = os.path.join(TMP, "raw"); os.makedirs(d, exist_ok=True)
open(os.path.join(d, "main.py"), "wb").write(CODE)
def raw_once():
    subprocess.run(["python3", "main.py"], cwd=d, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

def raw_throughput():
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(workers)) as ex:
        list(ex.map(lambda _: raw_once(), range(JOBS)))
    return JOBS / (time.perf_counter() - t)

wait(workers[0], submit(workers[0]))  # warm-up
raw_once()
# Interleave the two sides so that background load on a shared machine hits both alike.
rts, dts = [], []
for i in range(SAMPLES):
    t = time.perf_counter(); raw_once(); rts.append(time.perf_counter() - t)
    a = workers[i % len(workers)]
    t = time.perf_counter(); wait(a, submit(a)); dts.append(time.perf_counter() - t)
rt, dt = statistics.median(rts), statistics.median(dts)
rthr = raw_throughput()
dthr = devnet_throughput()
rthr = max(rthr, raw_throughput())
dthr = max(dthr, devnet_throughput())
if JSON_OUT:
    print(json.dumps({"workers": len(workers), "cpus": os.cpu_count(), "jobs": JOBS, "samples": SAMPLES,
                      "turnaround_ms": {"raw": rt * 1000, "devnet": dt * 1000},
                      "throughput_jobs_per_s": {"raw": rthr, "devnet": dthr}}))
    sys.exit(0)
print(f"sandrun-devnet benchmark: {len(workers)} workers (1 job at a time each), {os.cpu_count()} CPUs, trivial python3 job")
print(f"{'metric':<40}{'raw spawn':>12}{'devnet':>12}{'ratio':>10}")
print(f"{'turnaround, median of ' + str(SAMPLES) + ' (ms)':<40}{rt*1000:>12.1f}{dt*1000:>12.1f}{dt/rt:>9.2f}x")
print(f"{'throughput, ' + str(JOBS) + ' jobs (jobs/s)':<40}{rthr:>12.1f}{dthr:>12.1f}{dthr/rthr:>9.2f}x")
print(f"(turnaround samples interleaved; throughput: best of 2 runs each, raw spawns {len(workers)} at a time like {len(workers)} workers)")
PY
