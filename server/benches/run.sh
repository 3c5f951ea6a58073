#!/usr/bin/env bash
# Runs every benchmark of docs/performance.md on this machine, in one go:
#
#   throughput  wrk against Usher, nginx + auth_request with an auth cache (the anchor), nginx +
#               auth_request without one, and plain nginx; the same playlist and segment bytes
#   admission   1,000 new sessions/s against a 5 ms backend; storms of first requests
#   memory      RSS per session at 100k and 1M sessions (in process, through AuthCore)
#   scale       the same from 1k to 1M sessions: memory and core throughput, table + PNG
#   micro       criterion micro-benchmarks of the core, and callgrind instruction counts
#   check       the default `usher check` run, timed with hyperfine, and where its time goes
#   viewers     persistent RTMP viewers of one stream (VIEWERS, default 1000 and 5000): memory
#               and CPU per viewer, Usher side by side with nginx-rtmp (libnginx-mod-rtmp)
#
# Usage: server/benches/run.sh [--quick] [SECTION...]     (all sections when none is named)
# Needs: wrk, nginx (with auth_request), hyperfine, valgrind, gnuplot — Debian:
#   apt-get install -y wrk nginx-light hyperfine valgrind gnuplot-nox
# Results go to target/perf/<date>/ (JSON, tables, logs); the plot also to docs/perf-scale.png.
# The machine's load (uptime) is recorded before and after every section: other work on the
# machine changes requests/s, not instruction counts nor CPU time per request.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
QUICK=0
SECTIONS=()
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    throughput|admission|memory|scale|micro|check|viewers) SECTIONS+=("$a") ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done
[ ${#SECTIONS[@]} -eq 0 ] && SECTIONS=(throughput admission memory scale micro check viewers)
want() { local s; for s in "${SECTIONS[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

OUT="$ROOT/target/perf/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/usher-perf.XXXXXX)
chmod 755 "$WORK" # nginx's workers run as another user
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
load() { echo "load $(cut -d' ' -f1-3 /proc/loadavg) ($1)" | tee -a "$OUT/summary.txt"; }
for tool in wrk nginx hyperfine valgrind gnuplot python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (see the header of $0)" >&2; exit 1; }
done

log "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
log "rustc: $(rustc --version); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?') (work tree may differ)"

# ---------------------------------------------------------------- build
log "building (release): usher, bench helpers"
cargo build --release -q -p usher-conformance --bin usher
cargo bench -p usher-server --no-run --message-format=json 2>/dev/null >"$WORK/build.json"
# The executable of bench target $1 in the cargo JSON messages of $2 (default: the server's).
exe() {
  python3 - "${2:-$WORK/build.json}" "$1" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[2] and m.get("executable"):
        print(m["executable"])
EOF
}
USHER="$ROOT/target/release/usher"
STUB=$(exe stub_backend); ADMISSION=$(exe admission); SESSIONS=$(exe sessions); CORE=$(exe core)
cargo bench -p usher-conformance --bench viewers --no-run --message-format=json 2>/dev/null >"$WORK/build-viewers.json"
VIEWERS_BIN=$(exe viewers "$WORK/build-viewers.json")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a program in the background and waits for a line matching $2 on its stdout (never a
# fixed sleep); sets LAST_PID and LAST_LINE.
start() {
  local name=$1 pattern=$2 i; shift 2
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  for i in $(seq 1 200); do
    if LAST_LINE=$(grep -m1 "$pattern" "$WORK/$name.out" 2>/dev/null); then return 0; fi
    kill -0 "$LAST_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "$name did not start:" >&2; cat "$WORK/$name.err" >&2; exit 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# The stub backend on a free port; sets STUB_PID and BACKEND.
start_stub() {
  start stub "listening on" "$STUB" --port 0 "$@"
  STUB_PID=$LAST_PID
  BACKEND="http://${LAST_LINE#listening on }"
}

# Usher from a config whose streams ask $BACKEND; sets USHER_PID and SERVER.
start_usher() {
  # The load comes from one address: its share of connections is lifted to the whole cap.
  cat >"$WORK/usher.conf" <<EOF
http 127.0.0.1:0 max_connections=4096 max_connections_per_ip=4096;
stream s1 {
  input fake://fake;
  on_play $BACKEND/on_play;
}
stream s2 {
  input fake://fake;
  on_play $BACKEND/slow/on_play;
}
EOF
  # Sessions opening are logged at info; the bench keeps warnings, as nginx keeps no access log.
  start usher "usher: ready" env RUST_LOG=warn "$USHER" serve --config "$WORK/usher.conf"
  USHER_PID=$LAST_PID
  SERVER="http://$(echo "$LAST_LINE" | sed 's/.*http=\([^ ]*\).*/\1/')"
}

# CPU time (ticks of 1/100 s) of processes, threads included.
cpu_ticks() {
  local t=0 p f
  for p in "$@"; do
    for f in /proc/"$p"/task/*/stat; do
      [ -r "$f" ] || continue
      t=$((t + $(sed 's/.*) //' "$f" | awk '{print $12 + $13}')))
    done
  done
  echo $t
}

# ---------------------------------------------------------------- throughput
if want throughput; then
  log "throughput: wrk, cached sessions, same segment bytes"
  load before
  start_stub --threads 1
  start_usher
  NGX_AUTH=$(free_port); NGX_PLAIN=$(free_port); NGX_CACHED=$(free_port)
  mkdir -p "$WORK/www/s1" "$WORK/nginx/logs"
  BACKEND_HOSTPORT=${BACKEND#http://}
  cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes $(nproc);
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  types { video/mp2t ts; application/vnd.apple.mpegurl m3u8; }
  upstream backend { server $BACKEND_HOSTPORT; keepalive 64; }
  # The strongest anchor an operator would deploy: auth_request whose answers are cached per
  # token and client address, with one subrequest per key at a time (proxy_cache_lock), kept as
  # long as Usher keeps a session between re-checks.
  proxy_cache_path $WORK/nginx/authcache keys_zone=auth:16m levels=1:2 inactive=10m;
  server {
    listen 127.0.0.1:$NGX_CACHED;
    root $WORK/www;
    # The subrequest has no query string of its own; it shares the main request's variables.
    location / { set \$auth_token \$arg_token; auth_request /_auth; }
    location = /_auth {
      internal;
      proxy_pass http://backend\$request_uri;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_cache auth;
      proxy_cache_key "\$auth_token \$remote_addr";
      proxy_cache_valid 200 403 180s;
      proxy_cache_lock on;
      proxy_ignore_headers Cache-Control Expires Set-Cookie;
    }
  }
  server {
    listen 127.0.0.1:$NGX_AUTH;
    root $WORK/www;
    location / { auth_request /_auth; }
    location = /_auth {
      internal;
      proxy_pass http://backend\$request_uri;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }
  }
  server {
    listen 127.0.0.1:$NGX_PLAIN;
    root $WORK/www;
  }
}
EOF
  nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.out" 2>&1 &
  PIDS+=($!); NGINX_PID=$!
  for i in $(seq 1 100); do [ -s "$WORK/nginx/nginx.pid" ] && break; sleep 0.05; done
  NGINX_PIDS="$(pgrep -P "$(cat "$WORK/nginx/nginx.pid")" | tr '\n' ' ') $(cat "$WORK/nginx/nginx.pid")"
  cat >"$WORK/tokens.lua" <<'EOF'
-- Each wrk thread rotates over its own pool of tokens: many clients, each cached after its first
-- request. ROUND makes every run's tokens new.
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function init(args)
  pool = tonumber(os.getenv("TOKENS") or "1000")
  path = os.getenv("SEG_PATH")
  playlist = os.getenv("PLAYLIST_PATH") or ""
  prefix = "r" .. (os.getenv("ROUND") or "0") .. "w" .. id .. "t"
  counter = 0
end
function request()
  counter = counter + 1
  -- With a playlist, each client asks for it before each segment, as an HLS player does once
  -- per target duration: half the requests are playlists.
  local client = prefix .. (math.floor(counter / 2) % pool)
  if playlist ~= "" and counter % 2 == 0 then
    return wrk.format("GET", playlist .. "?token=" .. client)
  end
  if playlist ~= "" then
    return wrk.format("GET", path .. "?token=" .. client)
  end
  return wrk.format("GET", path .. "?token=" .. prefix .. (counter % pool))
end
EOF
  ROUNDS=${ROUNDS:-$([ $QUICK = 1 ] && echo 1 || echo 3)}
  DUR=$([ $QUICK = 1 ] && echo 3 || echo 6)
  CONNS=64
  echo "target round rps mb_per_s non2xx server_cpu_us_per_req backend_cpu_us_per_req bytes_per_resp p50_ms p99_ms" >"$OUT/throughput.tsv"
  for round in $(seq 1 "$ROUNDS"); do
    for mix in segments hls; do
    # The newest live segment, saved for nginx: all serve the very same bytes. Taken again for
    # each mix, so the one Usher is asked for is still in its live window.
    seq=$(curl -s "$SERVER/s1/index.m3u8?token=probe" | grep '^segment-' | tail -1 | sed 's/segment-\([0-9]*\)\.ts.*/\1/')
    path="/s1/segment-$seq.ts"
    curl -s -o "$WORK/www$path" "$SERVER$path?token=probe"
    size=$(stat -c %s "$WORK/www$path")
    # The playlist as Usher serves it, saved for nginx (its segment URIs carry no token, as an
    # nginx deployment's would not).
    curl -s -o "$WORK/www/s1/index.m3u8" "$SERVER/s1/index.m3u8?token=probe"
    playlist=""; [ $mix = hls ] && playlist=/s1/index.m3u8
    for target in usher nginx_cached nginx_auth nginx; do
      case $target in
        usher) url=$SERVER; server_pids=$USHER_PID ;;
        nginx_cached) url="http://127.0.0.1:$NGX_CACHED"; server_pids=$NGINX_PIDS ;;
        nginx_auth) url="http://127.0.0.1:$NGX_AUTH"; server_pids=$NGINX_PIDS ;;
        nginx) url="http://127.0.0.1:$NGX_PLAIN"; server_pids=$NGINX_PIDS ;;
      esac
      s0=$(cpu_ticks $server_pids); b0=$(cpu_ticks "$STUB_PID")
      ROUND="$round$mix$target" PLAYLIST_PATH=$playlist SEG_PATH=$path TOKENS=1000 wrk -t2 -c$CONNS -d${DUR}s --latency -s "$WORK/tokens.lua" "$url" >"$WORK/wrk.txt" 2>&1
      s1=$(cpu_ticks $server_pids); b1=$(cpu_ticks "$STUB_PID")
      cp "$WORK/wrk.txt" "$OUT/wrk-$round-$mix-$target.txt"
      python3 - "$WORK/wrk.txt" "$mix:$target" "$round" $((s1 - s0)) $((b1 - b0)) "$size" >>"$OUT/throughput.tsv" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
target, rnd, sticks, bticks, size = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
n = int(re.search(r"(\d+) requests in", text).group(1))
m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
non2xx = int(m.group(1)) if m else 0
def ms(label):
    m = re.search(r"\s%s\s+([\d.]+)(us|ms|s)" % label, text)
    if not m: return float("nan")
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
tb = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", text)
mb = float(tb.group(1)) * {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[tb.group(2)]
print(f"{target} {rnd} {rps:.0f} {mb:.0f} {non2xx} {sticks*1e4/n:.1f} {bticks*1e4/n:.1f} {size} {ms('50%'):.2f} {ms('99%'):.2f}")
EOF
      tail -1 "$OUT/throughput.tsv" | tee -a "$OUT/summary.txt"
    done
    done
  done
  python3 - "$OUT/throughput.tsv" <<'EOF' | tee -a "$OUT/summary.txt"
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
for mix in ("segments", "hls"):
    med = {}
    print(f"\n{mix}: " + ("segment requests only" if mix == "segments" else "a playlist before each segment"))
    print("| server | requests/s (median) | every round | server CPU µs/request | backend CPU µs/request | non-2xx |")
    print("|---|---|---|---|---|---|")
    for t in ("usher", "nginx_cached", "nginx_auth", "nginx"):
        rs = [r for r in rows if r[0] == f"{mix}:{t}"]
        med[t] = (statistics.median(float(r[2]) for r in rs), statistics.median(float(r[5]) for r in rs),
                  statistics.median(float(r[6]) for r in rs), sum(int(r[4]) for r in rs))
        rounds = " ".join(r[2] for r in rs)
        print(f"| {t} | {med[t][0]:.0f} | {rounds} | {med[t][1]:.1f} | {med[t][2]:.1f} | {med[t][3]} |")
    u, c, a, p = med["usher"], med["nginx_cached"], med["nginx_auth"], med["nginx"]
    print(f"ratio requests/s: usher/nginx_cached = {u[0]/c[0]:.2f} (goal >= 1.3), usher/nginx = {u[0]/p[0]:.2f} "
          f"(goal >= 1.0), usher/nginx_auth (uncached) = {u[0]/a[0]:.2f}")
    print(f"server CPU per request: usher {u[1]:.1f} µs, nginx {p[1]:.1f} µs (goal: usher <= nginx), "
          f"nginx_cached {c[1]:.1f} µs")
EOF
  # Where the time goes: one more run of Usher and of nginx + auth_request under perf's
  # software clock (this machine's perf counts no instructions), by binary and by function.
  if command -v perf >/dev/null && perf record -e cpu-clock -o "$WORK/probe.data" -- true >/dev/null 2>&1; then
    seq=$(curl -s "$SERVER/s1/index.m3u8?token=probe" | grep '^segment-' | tail -1 | sed 's/segment-\([0-9]*\)\.ts.*/\1/')
    path="/s1/segment-$seq.ts"
    curl -s -o "$WORK/www$path" "$SERVER$path?token=probe"
    for target in usher nginx_auth; do
      case $target in
        usher) url=$SERVER; pids=$USHER_PID ;;
        nginx_auth) url="http://127.0.0.1:$NGX_AUTH"; pids=$(echo "$NGINX_PIDS $STUB_PID" | xargs | tr ' ' ',') ;;
      esac
      perf record -e cpu-clock -F 999 -p "$pids" -o "$WORK/$target.perf" -- sleep 4 >/dev/null 2>&1 &
      perf_pid=$!
      ROUND="p$target" SEG_PATH=$path TOKENS=1000 wrk -t2 -c$CONNS -d4s -s "$WORK/tokens.lua" "$url" >/dev/null 2>&1
      wait $perf_pid || true
      {
        echo "### $target: share of CPU samples by binary"
        perf report -i "$WORK/$target.perf" --no-children --sort comm,dso --stdio 2>/dev/null | grep '%' | head -8 || true
        echo "### $target: top functions"
        perf report -i "$WORK/$target.perf" --no-children --sort sym --stdio 2>/dev/null | grep '%' | head -25 || true
      } >"$OUT/profile-$target.txt"
      head -12 "$OUT/profile-$target.txt" >>"$OUT/summary.txt"
    done
  fi
  load after
  stop "$NGINX_PID"; stop "$USHER_PID"; stop "$STUB_PID"
fi

# ---------------------------------------------------------------- viewers
if want viewers; then
  log "viewers: persistent RTMP viewers of one stream, Usher and nginx-rtmp, the suite's publisher"
  load before
  [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || { echo "missing libnginx-mod-rtmp" >&2; exit 1; }
  echo "label viewers playing receiving rss_idle_kib rss_kib rss_per_viewer_b cpu_us_per_viewer_s open_s" >"$OUT/viewers.tsv"
  for n in ${VIEWERS:-1000 5000}; do
    # Usher: a publish point, no authorization (nginx-rtmp's live application has none either).
    P=$(free_port)
    printf 'http 127.0.0.1:0;\nrtmp 127.0.0.1:%s max_connections=15000;\nstream s {\n  input publish://;\n}\n' "$P" >"$WORK/viewers.conf"
    start usher-viewers "usher: ready" env RUST_LOG=warn "$USHER" serve --config "$WORK/viewers.conf"
    UP=$LAST_PID
    "$VIEWERS_BIN" --publish "rtmp://127.0.0.1:$P/static/{name}" --app static --name s --pids "$UP" \
      --viewers "$n" --hold 20 --label usher | tee -a "$OUT/summary.txt" >>"$WORK/viewers.txt"
    stop "$UP"
    NP=$(free_port); mkdir -p "$WORK/ngx-rtmp/logs"
    cat >"$WORK/ngx-rtmp/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/ngx-rtmp/nginx.pid;
error_log $WORK/ngx-rtmp/logs/error.log warn;
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
events { worker_connections 19000; }
rtmp { server { listen 127.0.0.1:$NP; application static { live on; } } }
EOF
    rm -f "$WORK/ngx-rtmp/nginx.pid"
    nginx -p "$WORK/ngx-rtmp" -c "$WORK/ngx-rtmp/nginx.conf" >"$WORK/ngx-rtmp.out" 2>&1 &
    NGX=$!; PIDS+=("$NGX")
    for i in $(seq 1 100); do [ -s "$WORK/ngx-rtmp/nginx.pid" ] && break; sleep 0.05; done
    MP=$(cat "$WORK/ngx-rtmp/nginx.pid"); WPS=$(pgrep -P "$MP" | tr '\n' ',')
    "$VIEWERS_BIN" --publish "rtmp://127.0.0.1:$NP/static/{name}" --app static --name s --pids "${WPS}$MP" \
      --viewers "$n" --hold 20 --label nginx-rtmp | tee -a "$OUT/summary.txt" >>"$WORK/viewers.txt"
    stop "$NGX"
  done
  sed 's/ [a-z_]*=/ /g' "$WORK/viewers.txt" >>"$OUT/viewers.tsv"
  load after
fi

# ---------------------------------------------------------------- admission
if want admission; then
  log "admission: 1000 new sessions/s, backend 5 ms; storms of 1000 first requests"
  load before
  start_stub --delay-ms 5 --slow-delay-ms 250 --threads 1
  start_usher
  SECS=$([ $QUICK = 1 ] && echo 3 || echo 10)
  "$ADMISSION" --server "$SERVER" --backend "$BACKEND" --rate 1000 --seconds "$SECS" --storm 1000 >"$OUT/admission.json"
  python3 - "$OUT/admission.json" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
d = json.load(open(sys.argv[1]))
r = d["rate"]
print(f"offered {r['offered_per_sec']:.0f}/s, {r['allowed']}/{r['requests']} allowed, {r['not_one_backend_call']} without exactly one call")
print("| latency (ms) | p50 | p90 | p99 | max |")
print("|---|---|---|---|---|")
for k in ("client", "backend", "added"):
    p = r[k]
    print(f"| {k} | {p['p50_ms']:.3f} | {p['p90_ms']:.3f} | {p['p99_ms']:.3f} | {p['max_ms']:.3f} |")
for s in d["storms"]:
    print(f"storm, {s['where']}: {s['requests']} first requests ({s['at_once']} at once), {s['allowed']} allowed, backend calls: {s['backend_calls']} (in {s['secs']:.2f} s)")
EOF
  load after
  stop "$USHER_PID"; stop "$STUB_PID"
fi

# ---------------------------------------------------------------- memory and scale
if want memory || want scale; then
  if want scale; then SIZES="1000 10000 100000 300000 1000000"; else SIZES="100000 1000000"; fi
  [ $QUICK = 1 ] && SIZES="1000 100000"
  log "sessions in process: sizes $SIZES"
  load before
  : >"$OUT/sessions.jsonl"
  for n in $SIZES; do "$SESSIONS" --sessions "$n" | tee -a "$OUT/sessions.jsonl"; done
  for n in 100000 1000000; do
    [ $QUICK = 1 ] && [ "$n" = 1000000 ] && continue
    "$SESSIONS" --sessions "$n" --users-per 2 | tee -a "$OUT/sessions.jsonl"
  done
  load after
  python3 - "$OUT/sessions.jsonl" "$OUT/scale.dat" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| sessions | user ids | RSS/session (B) | heap/session (B) | opened/s | cached requests/s | ns/cached request | sweep (ms) |")
print("|---|---|---|---|---|---|---|---|")
with open(sys.argv[2], "w") as dat:
    for r in rows:
        users = f"1 per {r['users_per']}" if r["users_per"] else "none"
        print(f"| {r['sessions']:,} | {users} | {r['rss_per_session']:.0f} | {r['heap_per_session']:.0f} | "
              f"{r['open_per_sec']:,.0f} | {r['hits_per_sec']:,.0f} | {r['hit_ns']:.0f} | {r['sweep_ms']:.1f} |")
        if not r["users_per"]:
            dat.write(f"{r['sessions']} {r['rss_per_session']:.1f} {r['hits_per_sec']:.0f} {r['open_per_sec']:.0f}\n")
EOF
  if want scale; then
    gnuplot <<EOF
set terminal pngcairo size 800,420 font "sans,10"
set output "$OUT/scale.png"
set logscale x
set xrange [700:1.4e6]
set xlabel "open sessions"
set ylabel "bytes of RSS per session"
set y2label "requests per second (one core)"
set ytics nomirror
set y2tics
set yrange [0:400]
set y2range [0:*]
set key top right
set grid
set title "Usher auth core: memory and throughput by registry size"
plot "$OUT/scale.dat" using 1:2 with linespoints title "RSS/session (left)", \
     "" using 1:3 axes x1y2 with linespoints title "cached requests/s (right)", \
     "" using 1:4 axes x1y2 with linespoints title "sessions opened/s (right)"
EOF
    cp "$OUT/scale.png" "$ROOT/docs/perf-scale.png"
    log "plot: $OUT/scale.png (copied to docs/perf-scale.png)"
  fi
fi

# ---------------------------------------------------------------- micro
if want micro; then
  log "micro: criterion (core paths)"
  load before
  "$CORE" --bench 2>&1 | grep -E "time:|^[a-z_]+/" | tee "$OUT/criterion.txt" | tee -a "$OUT/summary.txt"
  load after
  log "micro: callgrind instruction counts in AuthCore::authorize and ::resolve (load-independent)"
  # Valgrind's CPU has no SHA extensions: SHA-256 runs in software there, several times the
  # instructions it takes natively with SHA-NI (which this machine has). Counts below include it.
  cg() {
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$1" \
      --toggle-collect='*AuthCore::authorize*' --toggle-collect='*AuthCore::resolve*' \
      "$SESSIONS" --sessions "$2" --lookups "$3" 2>&1 >/dev/null | awk '/Collected/{print $4}'
  }
  a=$(cg a 2000 0); b=$(cg b 12000 0); c=$(cg c 2000 20000)
  cp "$WORK/cg.c" "$OUT/callgrind.cached.out"
  python3 - "$a" "$b" "$c" "$WORK/cg.a" "$WORK/cg.c" <<'EOF' | tee -a "$OUT/summary.txt"
import re, subprocess, sys
a, b, c = map(int, sys.argv[1:4])
print(f"instructions per session opened (authorize + resolve): {(b - a) / 10000:,.0f}")
print(f"instructions per cached request (authorize): {(c - a) / 20000:,.0f}")
def inclusive(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", path], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+\S*?:(.*?) \[", line)
        if m:
            found[m.group(2)] = int(m.group(1).replace(",", ""))
    return found
base, cached = inclusive(sys.argv[4]), inclusive(sys.argv[5])
total = c - a
print("| share of a cached request's instructions | |")
print("|---|---|")
for label, fn in [
    ("identity (all)", "usher_server::auth::core::identity_of"),
    ("SHA-256 compression (software under valgrind)", "sha2::sha256::compress256"),
    ("the IP address's text", "<core::net::ip_addr::IpAddr as core::fmt::Display>::fmt"),
    ("dropping the request's strings", "core::ptr::drop_in_place<usher_server::auth::core::PlayRequest>"),
    ("AuthCore::step (lock, lookup, stores, handle)", "usher_server::auth::core::AuthCore::step"),
    ("Registry::find", "usher_server::auth::registry::Registry::find"),
]:
    print(f"| {label} | {(cached.get(fn, 0) - base.get(fn, 0)) / total:.1%} |")
EOF
fi

# ---------------------------------------------------------------- check
if want check; then
  log "check: the default usher check run (release binary), hyperfine"
  load before
  RUNS=$([ $QUICK = 1 ] && echo 1 || echo 3)
  hyperfine --runs "$RUNS" --export-json "$OUT/check-hyperfine.json" \
    "$USHER check --progress lines --json $OUT/check.json" 2>&1 | tee -a "$OUT/summary.txt"
  python3 - "$OUT/check.json" <<'EOF' | tee -a "$OUT/summary.txt"
import collections, json, re, sys
d = json.load(open(sys.argv[1]))
cases = d["cases"]
total = sum(c["elapsed_s"] for c in cases)
longest = max(c["elapsed_s"] for c in cases)
print(f"last run: {d['elapsed_s']:.1f} s wall, {len(cases)} cases, {total:.0f} s of case time, "
      f"the longest case {longest:.1f} s (cases run 24 at a time by default)")
by = collections.defaultdict(lambda: [0, 0.0])
steps = collections.defaultdict(lambda: [0, 0.0])
for c in cases:
    f = by[c["location"].split(":")[0]]
    f[0] += 1
    f[1] += c["elapsed_s"]
    for s in c["steps"]:
        st = steps[re.sub(r'"[^"]*"', '"…"', re.sub(r"\d+", "N", s["text"]))]
        st[0] += 1
        st[1] += s["elapsed_ms"] / 1000
print("| feature | cases | case time (s) | share |")
print("|---|---|---|---|")
for name, (n, t) in sorted(by.items(), key=lambda kv: -kv[1][1])[:8]:
    print(f"| {name} | {n} | {t:.1f} | {t / total:.0%} |")
print("| step (quoted parts and numbers elided) | times | time (s) |")
print("|---|---|---|")
for name, (n, t) in sorted(steps.items(), key=lambda kv: -kv[1][1])[:6]:
    print(f"| {name} | {n} | {t:.1f} |")
EOF
  load after
fi
log "results: $OUT"
