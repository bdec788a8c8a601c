#!/usr/bin/env bash
# Benchmark of sandrun-devnet: trivial-job turnaround (submit -> completed status) and
# throughput (jobs/s for N small jobs spread over the workers), against a baseline measured
# in the same run: spawning the same script directly (`python3 main.py`).
# The client waits for a job as the SDK does: on the WebSocket `/stream/{id}` until its
# `[DONE]` frame, then one `GET /status/{id}`. (It used to poll `/status` every 2 ms from
# 6 threads, a new connection each: ~25,000 requests per 100 jobs, whose CPU on a 2-CPU
# machine outweighed the jobs' own and halved the devnet's figure; docs/decisions.md.)
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

python3 - "$OUT" "$JOBS" "$SAMPLES" "$TMP" "$JSON" "$PID" <<'PY'
import base64, http.client, json, os, socket, statistics, struct, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

info = json.load(open(sys.argv[1]))
JOBS, SAMPLES, TMP, JSON_OUT = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
DEVNET_PID = int(sys.argv[6])
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

def stream_done(addr, jid):
    """Reads the job's WebSocket `/stream/{id}` until the `[DONE]` frame (server frames are
    unmasked text frames; a close frame or EOF before `[DONE]` is an error)."""
    host, port = addr.split(":")
    s = socket.create_connection((host, int(port)), timeout=120)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /stream/{jid} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            assert chunk, "no WebSocket handshake"
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        def need(n):
            nonlocal buf
            while len(buf) < n:
                chunk = s.recv(65536)
                assert chunk, "stream ended before [DONE]"
                buf += chunk
        while True:
            need(2)
            op, n = buf[0] & 0x0F, buf[1] & 0x7F
            at = 2
            if n == 126:
                need(4); n = struct.unpack(">H", buf[2:4])[0]; at = 4
            elif n == 127:
                need(10); n = struct.unpack(">Q", buf[2:10])[0]; at = 10
            need(at + n)
            payload, buf = buf[at:at + n], buf[at + n:]
            assert op != 0x8, "stream closed before [DONE]"
            if payload.startswith(b"[DONE]"):
                return
            assert not payload.startswith(b"[ERROR]"), payload
    finally:
        s.close()

def wait(addr, jid):
    stream_done(addr, jid)
    st, data = call(addr, "GET", f"/status/{jid}")
    assert st == 200 and json.loads(data)["status"] == "completed", data

def devnet_cpu():
    """(own, jobs) CPU seconds of the devnet: the orchestrator and its worker processes,
    and the jobs they reaped (their children's time, counted by wait4)."""
    pids = [DEVNET_PID]
    for t in os.listdir(f"/proc/{DEVNET_PID}/task"):
        pids += [int(c) for c in open(f"/proc/{DEVNET_PID}/task/{t}/children").read().split()]
    own = jobs = 0.0
    for p in pids:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        own += int(f[11]) + int(f[12])
        jobs += int(f[13]) + int(f[14])
    tick = os.sysconf("SC_CLK_TCK")
    return own / tick, jobs / tick

def cpu_since(t0, d0):
    t1, d1 = os.times(), devnet_cpu()
    return {"client": round(t1.user + t1.system - t0.user - t0.system, 2),
            "devnet": round(d1[0] - d0[0], 2), "jobs": round(d1[1] - d0[1], 2)}

def devnet_throughput():
    def one(i):
        a = workers[i % len(workers)]
        wait(a, submit(a))
    t0, d0 = os.times(), devnet_cpu()
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(workers) * 2) as ex:
        list(ex.map(one, range(JOBS)))
    return JOBS / (time.perf_counter() - t), cpu_since(t0, d0)

d = os.path.join(TMP, "raw"); os.makedirs(d, exist_ok=True)
open(os.path.join(d, "main.py"), "wb").write(CODE)
def raw_once():
    # Its own session, as the devnet starts every job (setsid): with the kernel's
    # autogroup scheduling a session is a scheduling group, so on a loaded machine a
    # job in its own session gets a larger share than one in the bench's session.
    subprocess.run(["python3", "main.py"], cwd=d, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   start_new_session=True)

def raw_throughput():
    t0 = os.times()
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(workers)) as ex:
        list(ex.map(lambda _: raw_once(), range(JOBS)))
    thr = JOBS / (time.perf_counter() - t)
    t1 = os.times()
    return thr, {"client": round(t1.user + t1.system - t0.user - t0.system, 2),
                 "jobs": round(t1.children_user + t1.children_system - t0.children_user - t0.children_system, 2)}

wait(workers[0], submit(workers[0]))  # warm-up
raw_once()
# Interleave the two sides so that background load on a shared machine hits both alike.
rts, dts = [], []
for i in range(SAMPLES):
    t = time.perf_counter(); raw_once(); rts.append(time.perf_counter() - t)
    a = workers[i % len(workers)]
    t = time.perf_counter(); wait(a, submit(a)); dts.append(time.perf_counter() - t)
rt, dt = statistics.median(rts), statistics.median(dts)
raw_runs, dev_runs = [], []
for _ in range(2):
    raw_runs.append(raw_throughput())
    dev_runs.append(devnet_throughput())
(rthr, rcpu), (dthr, dcpu) = max(raw_runs, key=lambda r: r[0]), max(dev_runs, key=lambda r: r[0])
if JSON_OUT:
    print(json.dumps({"workers": len(workers), "cpus": os.cpu_count(), "jobs": JOBS, "samples": SAMPLES,
                      "turnaround_ms": {"raw": rt * 1000, "devnet": dt * 1000},
                      "throughput_jobs_per_s": {"raw": rthr, "devnet": dthr},
                      "cpu_seconds": {"raw": rcpu, "devnet": dcpu}}))
    sys.exit(0)
print(f"sandrun-devnet benchmark: {len(workers)} workers (1 job at a time each), {os.cpu_count()} CPUs, trivial python3 job")
print(f"{'metric':<40}{'raw spawn':>12}{'devnet':>12}{'ratio':>10}")
print(f"{'turnaround, median of ' + str(SAMPLES) + ' (ms)':<40}{rt*1000:>12.1f}{dt*1000:>12.1f}{dt/rt:>9.2f}x")
print(f"{'throughput, ' + str(JOBS) + ' jobs (jobs/s)':<40}{rthr:>12.1f}{dthr:>12.1f}{dthr/rthr:>9.2f}x")
print(f"(turnaround samples interleaved; throughput: best of 2 runs each, raw spawns {len(workers)} at a time like {len(workers)} workers,")
print(f" each job in its own session on both sides)")
print(f"CPU seconds in the best throughput runs: raw: jobs {rcpu['jobs']}, client {rcpu['client']}; "
      f"devnet: jobs {dcpu['jobs']}, worker processes {dcpu['devnet']}, client {dcpu['client']}")
PY
