#!/usr/bin/env bash
# frontdoor vs HAProxy vs nginx (stream): the same TLS front-door job on the
# same machine, in the same run.
#
#   benches/run.sh            # 3 runs per proxy, medians (about 5-10 minutes)
#   benches/run.sh --quick    # 1 run, fewer iterations (under 2 minutes)
#   benches/run.sh --scale    # also: as many idle connections as the fd cap allows (frontdoor)
#   benches/run.sh --only frontdoor,haproxy   # a subset of proxies
#   benches/run.sh --workloads latency,resume  # a subset of workloads
#
# Each proxy runs pinned to CPU 0; the load generator and the echo backend
# run on CPU 1. What is measured is the proxy's own CPU time (utime+stime of
# all its processes, from /proc/PID/stat) per unit of work, and its RSS
# (VmRSS summed over its processes). See docs/performance.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0
SCALE=0
RUNS=3
PROXIES="frontdoor haproxy nginx"
WORKLOADS="idle handshake cert resume relay latency floor"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; RUNS=1 ;;
        --scale) SCALE=1 ;;
        --runs) RUNS=$2; shift ;;
        --only) PROXIES=$(echo "$2" | tr , ' '); shift ;;
        --workloads) WORKLOADS=$(echo "$2" | tr , ' '); shift ;;
        -h|--help) sed -n 2,14p "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    HS_N=600; IDLE_N=1000; BULK_BYTES=$((128 << 20)); PP_N=1000
else
    HS_N=2000; IDLE_N=5000; BULK_BYTES=$((1 << 30)); PP_N=5000
fi
SCALE_N=9900

log() { echo "[bench] $*" >&2; }

# --- tools ------------------------------------------------------------------
NGINX_STREAM=""
for m in /usr/lib/nginx/modules/ngx_stream_module.so /usr/lib64/nginx/modules/ngx_stream_module.so; do
    [ -f "$m" ] && NGINX_STREAM=$m
done
if ! command -v haproxy >/dev/null || ! command -v nginx >/dev/null || [ -z "$NGINX_STREAM" ]; then
    log "installing haproxy, nginx and its stream module with apt-get"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq haproxy nginx libnginx-mod-stream >/dev/null
    NGINX_STREAM=/usr/lib/nginx/modules/ngx_stream_module.so
fi
for t in openssl taskset ss cargo; do
    command -v $t >/dev/null || { echo "run.sh: $t is required" >&2; exit 1; }
done

# --- build ------------------------------------------------------------------
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
log "building frontdoor and the bench tools (release)"
(cd "$ROOT" && cargo build --release --quiet --bin frontdoor --example loadgen --example echo_backend --example hs_cost)
BIN=$CARGO_TARGET_DIR/release
LOADGEN=$BIN/examples/loadgen
HSCOST=$BIN/examples/hs_cost
ECHO=$BIN/examples/echo_backend
FRONTDOOR=${FRONTDOOR_BIN:-$BIN/frontdoor}   # FRONTDOOR_BIN: measure another build

# --- machine ----------------------------------------------------------------
NPROC=$(nproc)
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
KERNEL=$(uname -r)
if [ "$NPROC" -ge 2 ]; then
    PIN_PROXY="taskset -c 0"; PIN_LOAD="taskset -c 1"
else
    log "only one CPU: running unpinned"
    PIN_PROXY=""; PIN_LOAD=""
fi
HARD=$(ulimit -Hn)
if [ "$HARD" != unlimited ] && [ "$HARD" -lt 20000 ]; then ulimit -n "$HARD"; else ulimit -n 20000; fi
NOFILE=$(ulimit -n)
if [ $((IDLE_N * 2 + 100)) -gt "$NOFILE" ]; then
    IDLE_N=$(((NOFILE - 100) / 2))
    log "open-file limit $NOFILE: idle connections lowered to $IDLE_N"
fi
TCK=$(getconf CLK_TCK)

WORK=$(mktemp -d /tmp/frontdoor-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- ports ------------------------------------------------------------------
# Free: no socket at all (listening or connected) has it as its local port.
port_free() { [ -z "$(ss -Htan "sport = :$1")" ]; }
pick_port() {
    local p
    for _ in $(seq 1 200); do
        # below the usual ephemeral range (32768-60999)
        p=$((10000 + RANDOM % 22000))
        if port_free "$p"; then echo "$p"; return; fi
    done
    echo "run.sh: no free port" >&2; exit 1
}
wait_port() {
    for _ in $(seq 1 100); do
        port_free "$1" || return 0
        sleep 0.1
    done
    echo "run.sh: nothing listens on port $1" >&2; return 1
}
PX=$(pick_port)

# --- certificates -----------------------------------------------------------
mk_cert() { # stem CN
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=$2" -addext "subjectAltName=DNS:$2" \
        -keyout "$WORK/$1.key" -out "$WORK/$1.crt" 2>/dev/null
}
mk_cert server localhost
mk_cert client bench-client
cat "$WORK/server.crt" "$WORK/server.key" > "$WORK/server.pem"
FP="sha256:$(openssl x509 -pubkey -noout -in "$WORK/client.crt" | openssl pkey -pubin -outform der \
    | openssl dgst -sha256 -binary | base64)"
cat > "$WORK/registry.yaml" <<EOF
keys:
  - name: bench-client
    fingerprint: "$FP"
    account: bench
    login: bench@example.org
EOF

# --- backend ----------------------------------------------------------------
# Port 0: the backend picks free ports and prints them.
# BENCH_BACKEND=python: the Python one of benches/rtt.py instead (one
# thread per connection; for the latency workloads, not for bulk).
if [ "${BENCH_BACKEND:-rust}" = python ]; then
    for m in v2 v1 none; do
        $PIN_LOAD python3 "$ROOT/benches/rtt.py" --addr 127.0.0.1:0 serve --proxy-header $m >>"$WORK/echo.log" 2>&1 &
        PIDS+=($!)
    done
else
    $PIN_LOAD "$ECHO" "v2=127.0.0.1:0" "v1=127.0.0.1:0" "none=127.0.0.1:0" >"$WORK/echo.log" 2>&1 &
    PIDS+=($!)
fi
for _ in $(seq 1 100); do
    [ "$(grep -c '^listening' "$WORK/echo.log")" = 3 ] && break
    sleep 0.1
done
be_port() { grep "^listening mode=$1 " "$WORK/echo.log" | sed 's/.*://'; }
BE_V2=$(be_port V2); BE_V1=$(be_port V1); BE_NONE=$(be_port None)
[ -n "$BE_V2" ] && [ -n "$BE_V1" ] && [ -n "$BE_NONE" ] || { cat "$WORK/echo.log" >&2; exit 1; }

# --- proxy configs ----------------------------------------------------------
# frontdoor: client-key auth when this build has it (the registry above).
FD_CLIENT_AUTH=1
write_frontdoor_config() {
    {
        cat <<EOF
listeners:
  - bind: "127.0.0.1:$PX"
    default_route: web
tls:
  certificates:
    - cert: $WORK/server.crt
      key: $WORK/server.key
routes:
  imap:
    alpn: [imap]
    backend: "127.0.0.1:$BE_V2"
    proxy_protocol: v2
  smtp:
    alpn: [smtp]
    backend: "127.0.0.1:$BE_V2"
    proxy_protocol: v2
  web:
    alpn: [h2, "http/1.1"]
    backend: "127.0.0.1:$BE_V2"
    proxy_protocol: v2
timeouts: { handshake: 10s, connect: 5s, idle: 30m }
limits: { max_connections: 20000, per_ip_connections: 20000 }   # every load client is 127.0.0.1
EOF
        if [ "$FD_CLIENT_AUTH" = 1 ]; then
            printf 'client_auth: { registry: %s, unknown_key: reject }\n' "$WORK/registry.yaml"
        fi
    } > "$WORK/frontdoor.yaml"
}
write_frontdoor_config

# HAProxy: ca-file = the client's self-signed certificate, so that a client
# certificate is requested and fully verified (verify optional).
cat > "$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 9900
    ssl-default-bind-options ssl-min-ver TLSv1.3
    log stderr format raw local0 err
defaults
    mode tcp
    timeout connect 5s
    timeout client 30m
    timeout server 30m
frontend fd
    bind 127.0.0.1:$PX ssl crt $WORK/server.pem alpn imap,smtp,h2,http/1.1 ca-file $WORK/client.crt verify optional
    use_backend bk_imap if { ssl_fc_alpn -i imap }
    use_backend bk_smtp if { ssl_fc_alpn -i smtp }
    default_backend bk_web
backend bk_imap
    server s1 127.0.0.1:$BE_V2 send-proxy-v2-ssl-cn
backend bk_smtp
    server s1 127.0.0.1:$BE_V2 send-proxy-v2-ssl-cn
backend bk_web
    server s1 127.0.0.1:$BE_V2 send-proxy-v2
EOF

# nginx: the stream module sends PROXY v1 only; optional_no_ca requests a
# client certificate and checks possession of its key, not its chain.
mkdir -p "$WORK/nginx/logs"
cat > "$WORK/nginx.conf" <<EOF
load_module $NGINX_STREAM;
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log error;
events { worker_connections 19000; }
stream {
    map \$ssl_alpn_protocol \$backend {
        default 127.0.0.1:$BE_V1;
    }
    server {
        listen 127.0.0.1:$PX ssl;
        ssl_certificate $WORK/server.crt;
        ssl_certificate_key $WORK/server.key;
        ssl_protocols TLSv1.3;
        ssl_alpn imap smtp h2 http/1.1;
        ssl_verify_client optional_no_ca;
        proxy_protocol on;
        proxy_pass \$backend;
    }
}
EOF

# The floor's plain-TCP job: the same proxies without TLS termination.
# frontdoor: a passthrough route (it reads the ClientHello to choose, then
# relays TCP); HAProxy and nginx: plain TCP proxies. The client sends a
# ClientHello and reads the greeting and the hello's echo (loadgen --hello).
cat > "$WORK/frontdoor-plain.yaml" <<EOF
listeners:
  - bind: "127.0.0.1:$PX"
    route: pass
tls:
  certificates:
    - cert: $WORK/server.crt
      key: $WORK/server.key
routes:
  pass:
    alpn: ["http/1.1"]
    mode: passthrough
    backend: "127.0.0.1:$BE_V2"
    proxy_protocol: v2
timeouts: { handshake: 10s, connect: 5s, idle: 30m }
limits: { max_connections: 20000, per_ip_connections: 20000 }
EOF
cat > "$WORK/haproxy-plain.cfg" <<EOF
global
    nbthread 1
    maxconn 9900
    log stderr format raw local0 err
defaults
    mode tcp
    timeout connect 5s
    timeout client 30m
    timeout server 30m
frontend fd
    bind 127.0.0.1:$PX
    default_backend bk
backend bk
    server s1 127.0.0.1:$BE_V2 send-proxy-v2
EOF
sed -e "s|listen 127.0.0.1:$PX ssl;|listen 127.0.0.1:$PX;|" -e '/^ *ssl_/d' "$WORK/nginx.conf" > "$WORK/nginx-plain.conf"

start_plain() { # name: the plain-TCP configuration
    case "$1" in
        frontdoor) FD_CONFIG=$WORK/frontdoor-plain.yaml start_proxy frontdoor ;;
        haproxy) HAPROXY_CONFIG=$WORK/haproxy-plain.cfg start_proxy haproxy ;;
        nginx) NGINX_CONFIG=$WORK/nginx-plain.conf start_proxy nginx ;;
    esac
}

start_proxy() { # name -> sets PROXY_PID
    case "$1" in
        frontdoor)
            # Errors and warnings only, like HAProxy and nginx below (none of
            # the three writes a line per connection): FD_LOG=info to include it.
            RUST_LOG=${FD_LOG:-warn} $PIN_PROXY "$FRONTDOOR" serve --config "${FD_CONFIG:-$WORK/frontdoor.yaml}" \
                >/dev/null 2>"$WORK/frontdoor.log" &
            ;;
        haproxy)
            $PIN_PROXY haproxy -db -f "${HAPROXY_CONFIG:-$WORK/haproxy.cfg}" >/dev/null 2>"$WORK/haproxy.log" &
            ;;
        nginx)
            $PIN_PROXY nginx -p "$WORK/nginx" -c "${NGINX_CONFIG:-$WORK/nginx.conf}" >/dev/null 2>"$WORK/nginx.log" &
            ;;
    esac
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    for _ in $(seq 1 100); do
        port_free "$PX" || return 0
        kill -0 "$PROXY_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$1" = frontdoor ] && [ "$FD_CLIENT_AUTH" = 1 ] && ! kill -0 "$PROXY_PID" 2>/dev/null; then
        # A build without client-key auth refuses the client_auth section.
        log "frontdoor: client-key auth unavailable ($(tail -1 "$WORK/frontdoor.log")); client-certificate handshakes skipped"
        FD_CLIENT_AUTH=0
        write_frontdoor_config
        start_proxy frontdoor
        return
    fi
    cat "$WORK/$1.log" >&2
    exit 1
}
stop_proxy() {
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do port_free "$PX" && break; sleep 0.1; done
}

# The proxy's processes: the one started and all its descendants.
tree_pids() {
    local p=$1
    echo "$p"
    for c in $(pgrep -P "$p" 2>/dev/null); do tree_pids "$c"; done
}
cpu_ticks() { # utime+stime of the tree, in clock ticks
    local t=0 p f
    for p in $(tree_pids "$1"); do
        f=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        # after "pid (comm) ": state is field 1, utime 12, stime 13
        t=$((t + $(echo "$f" | awk '{print $12 + $13}')))
    done
    echo "$t"
}
rss_kib() {
    local t=0 p v
    for p in $(tree_pids "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

LG=(--addr "127.0.0.1:$PX" --deadline 180)
CERT=(--cert "$WORK/client.crt" --key "$WORK/client.key")
loadgen() { $PIN_LOAD "$LOADGEN" "$@"; }
kv() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }

# results: R[proxy.metric] = "v1 v2 v3"
declare -A R
add() { R[$1.$2]="${R[$1.$2]:-} $3"; }

# One measurement of CPU per operation: run the loadgen command, divide.
cpu_per() { # divisor scale cmd... -> CPU per unit (scale 1e6 = µs, 1e3 = ms)
    local div=$1 scale=$2; shift 2
    local a b out
    a=$(cpu_ticks "$PROXY_PID")
    out=$("$@") || { echo "run.sh: loadgen failed: $out" >&2; return 1; }
    b=$(cpu_ticks "$PROXY_PID")
    echo "$out" >&2
    awk -v a="$a" -v b="$b" -v t="$TCK" -v n="$div" -v s="$scale" 'BEGIN {printf "%.1f", (b - a) / t * s / n}'
}

idle_kib() { # count -> KiB per idle connection (prints "kib total_rss_kib")
    local n=$1 before after fifo out
    before=$(rss_kib "$PROXY_PID")
    fifo=$WORK/idle.fifo; rm -f "$fifo"; mkfifo "$fifo"
    out=$WORK/idle.out; : > "$out"
    loadgen "${LG[@]}" idle --count "$n" --hold 300 < "$fifo" > "$out" &
    local lpid=$!
    PIDS+=("$lpid")
    exec 7>"$fifo"
    for _ in $(seq 1 1800); do
        grep -q '^ready' "$out" && break
        kill -0 "$lpid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    after=$(rss_kib "$PROXY_PID")
    local ready; ready=$(grep '^ready' "$out" || true)
    echo "ready: $ready" >&2
    echo >&7; exec 7>&-
    wait "$lpid" || { echo "run.sh: idle loadgen failed: $(cat "$out")" >&2; return 1; }
    tail -1 "$out" >&2
    local got; got=$(kv "$ready" n)
    awk -v a="$before" -v b="$after" -v n="${got:-0}" 'BEGIN {if (n > 0) printf "%.1f %d\n", (b - a) / n, b; else print "nan 0"}'
}

median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2] + v[NR/2+1]) / 2}'; }

has() { [[ " $WORKLOADS " == *" $1 "* ]]; }
RTT=(python3 "$ROOT/benches/rtt.py" --addr "127.0.0.1:$PX")
pyrtt() { $PIN_LOAD "${RTT[@]}" "$@"; }

T_START=$(date +%s)
for run in $(seq 1 "$RUNS"); do
    if has latency; then
        # direct to the backend: the latency baseline, for both clients
        out=$(loadgen --addr "127.0.0.1:$BE_NONE" --plain --deadline 60 pingpong --rounds "$PP_N")
        add direct p50 "$(kv "$out" p50_us)"; add direct p99 "$(kv "$out" p99_us)"
        out=$($PIN_LOAD python3 "$ROOT/benches/rtt.py" --addr "127.0.0.1:$BE_NONE" --plain pingpong --rounds "$PP_N")
        add direct py50 "$(kv "$out" p50_us)"; add direct py99 "$(kv "$out" p99_us)"
    fi
    if has floor; then
        # The floor: the same job without TLS (frontdoor's plain route; the
        # other two as plain TCP proxies), and the crypto of one handshake.
        out=$($PIN_PROXY "$HSCOST" --iters "$HS_N")
        add floor crypto_us "$(kv "$out" crypto_us)"; add floor kx_us "$(kv "$out" x25519_us)"
        add floor rustls_us "$(kv "$out" server_us)"; add floor rustls_rs_us "$(kv "$out" resumed_us)"
    fi
    for px in $PROXIES; do
        log "run $run/$RUNS: $px"
        start_proxy "$px"
        loadgen "${LG[@]}" handshake --count 20 >/dev/null   # warm up
        if has idle; then
            read -r kib total < <(idle_kib "$IDLE_N")
            add "$px" idle_kib "$kib"; add "$px" idle_rss "$total"
        fi
        if has handshake; then
            add "$px" hs_us "$(cpu_per "$HS_N" 1e6 loadgen "${LG[@]}" handshake --count "$HS_N")"
            add "$px" hs_seq_us "$(cpu_per "$HS_N" 1e6 pyrtt handshake --count "$HS_N")"
        fi
        if has cert && { [ "$px" != frontdoor ] || [ "$FD_CLIENT_AUTH" = 1 ]; }; then
            add "$px" hs_cert_us "$(cpu_per "$HS_N" 1e6 loadgen "${LG[@]}" "${CERT[@]}" handshake --count "$HS_N")"
        fi
        if has resume; then
            add "$px" rs_us "$(cpu_per "$HS_N" 1e6 loadgen "${LG[@]}" --resume handshake --count "$HS_N")"
            if [ "$px" != frontdoor ] || [ "$FD_CLIENT_AUTH" = 1 ]; then
                add "$px" rs_cert_us "$(cpu_per "$HS_N" 1e6 loadgen "${LG[@]}" "${CERT[@]}" --resume handshake --count "$HS_N")"
            fi
        fi
        if has relay; then
            gib=$(awk -v b="$BULK_BYTES" 'BEGIN {print 2 * b / 1073741824}')
            add "$px" bulk_ms "$(cpu_per "$gib" 1e3 loadgen "${LG[@]}" bulk --bytes "$BULK_BYTES" --conns 2)"
        fi
        if has latency; then
            out=$(loadgen "${LG[@]}" pingpong --rounds "$PP_N")
            add "$px" p50 "$(kv "$out" p50_us)"; add "$px" p99 "$(kv "$out" p99_us)"
            a=$(cpu_ticks "$PROXY_PID")
            out=$(pyrtt pingpong --rounds "$PP_N")
            b=$(cpu_ticks "$PROXY_PID")
            echo "$out" >&2
            add "$px" py50 "$(kv "$out" p50_us)"; add "$px" py99 "$(kv "$out" p99_us)"
            add "$px" py_cpu "$(awk -v a="$a" -v b="$b" -v t="$TCK" -v n="$PP_N" 'BEGIN {printf "%.1f", (b - a) / t * 1e6 / n}')"
        fi
        stop_proxy
        if has floor; then
            start_plain "$px"
            add "$px" tcp_us "$(cpu_per "$HS_N" 1e6 loadgen --addr "127.0.0.1:$PX" --plain --hello --deadline 180 handshake --count "$HS_N")"
            stop_proxy
        fi
    done
done
if [ "$SCALE" = 1 ]; then
    n=$(((NOFILE - 100) / 2))
    log "scale: $n idle connections through frontdoor"
    start_proxy frontdoor
    loadgen "${LG[@]}" handshake --count 20 >/dev/null
    read -r kib total < <(idle_kib "$n")
    SCALE_LINE="frontdoor held $n idle TLS connections: RSS $((total / 1024)) MiB, $kib KiB per connection"
    stop_proxy
    # Session memory: 100,000 resumed handshakes, each issuing new tickets.
    for px in $PROXIES; do
        log "scale: 100000 resumed handshakes through $px"
        start_proxy "$px"
        loadgen "${LG[@]}" --resume handshake --count 2000 >/dev/null
        before=$(rss_kib "$PROXY_PID")
        out=$(loadgen "${LG[@]}" --resume handshake --count 100000)
        after=$(rss_kib "$PROXY_PID")
        SCALE_LINE="$SCALE_LINE
$px: RSS $before -> $after KiB over 100,000 resumed handshakes ($((after - before)) KiB; $(kv "$out" resumed) resumed)"
        stop_proxy
    done
fi
T_END=$(date +%s)

# --- table ------------------------------------------------------------------
d50=$(echo "${R[direct.p50]:-}" | median)
d99=$(echo "${R[direct.p99]:-}" | median)
dp50=$(echo "${R[direct.py50]:-}" | median)
dp99=$(echo "${R[direct.py99]:-}" | median)
for px in $PROXIES; do
    R[$px.add50]=$(for v in ${R[$px.p50]:-}; do awk -v a="$v" -v d="$d50" 'BEGIN {printf "%.1f ", a - d}'; done)
    R[$px.add99]=$(for v in ${R[$px.p99]:-}; do awk -v a="$v" -v d="$d99" 'BEGIN {printf "%.1f ", a - d}'; done)
    R[$px.addpy50]=$(for v in ${R[$px.py50]:-}; do awk -v a="$v" -v d="$dp50" 'BEGIN {printf "%.1f ", a - d}'; done)
    R[$px.addpy99]=$(for v in ${R[$px.py99]:-}; do awk -v a="$v" -v d="$dp99" 'BEGIN {printf "%.1f ", a - d}'; done)
done

echo
echo "frontdoor benchmark: $(date -u +%Y-%m-%dT%H:%MZ), $RUNS run(s), median shown"
echo "machine: $NPROC CPUs, $CPU_MODEL, Linux $KERNEL; proxy on CPU 0, load on CPU 1"
echo "versions: $("$FRONTDOOR" --version), $(haproxy -v 2>/dev/null | head -1 | awk '{print "HAProxy " $3}'), $(nginx -v 2>&1 | sed 's/.*: //'), $(openssl version | awk '{print "OpenSSL " $2}')"
echo "workload: TLS 1.3, X25519, AES-128-GCM, ECDSA P-256 server certificate, PROXY v2 (nginx: v1) to a greeting+echo backend; resumed: TLS 1.3 tickets, PSK-DHE"
echo "workloads run: $WORKLOADS"
echo
row() { # label key
    local label=$1 key=$2 px vals=() v best=""
    for px in frontdoor haproxy nginx; do
        if [[ " $PROXIES " == *" $px "* ]]; then v=$(echo "${R[$px.$key]:-}" | median); else v="-"; fi
        vals+=("$v")
    done
    for v in "${vals[1]}" "${vals[2]}"; do
        [ "$v" = "-" ] && continue
        if [ -z "$best" ] || awk -v a="$v" -v b="$best" 'BEGIN {exit !(a < b)}'; then best=$v; fi
    done
    local ratio="-"
    if [ -n "$best" ] && [ "${vals[0]}" != "-" ]; then
        ratio=$(awk -v a="${vals[0]}" -v b="$best" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "-"}')
    fi
    printf '| %-38s | %10s | %10s | %10s | %9s |\n' "$label" "${vals[0]}" "${vals[1]}" "${vals[2]}" "$ratio"
}
printf '| %-38s | %10s | %10s | %10s | %9s |\n' metric frontdoor haproxy nginx "fd/best"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..40})" "------------" "------------" "------------" "-----------"
row "handshake CPU (us)" hs_us
row "handshake CPU, one at a time (us)" hs_seq_us
row "handshake + client cert CPU (us)" hs_cert_us
row "resumed handshake CPU (us)" rs_us
row "resumed + client cert CPU (us)" rs_cert_us
row "plain TCP connection CPU (us)" tcp_us
row "relay CPU per GiB, both ways (ms)" bulk_ms
row "RSS per idle TLS connection (KiB)" idle_kib
row "RSS at $IDLE_N idle connections (KiB)" idle_rss
row "added latency p50, loadgen 64 B (us)" add50
row "added latency p99, loadgen 64 B (us)" add99
row "added latency p50, python 32 B (us)" addpy50
row "added latency p99, python 32 B (us)" addpy99
row "CPU per python round trip (us)" py_cpu
echo
if has latency; then
    echo "direct to backend: loadgen p50 ${d50} µs, p99 ${d99} µs; python p50 ${dp50} µs, p99 ${dp99} µs (plain TCP, $PP_N round trips)"
fi
if has floor; then
    crypto=$(echo "${R[floor.crypto_us]}" | median); kx=$(echo "${R[floor.kx_us]}" | median)
    echo "floor, CPU 0, ring: the crypto of a full handshake (X25519 + ECDSA P-256 signature) $crypto µs, of a resumed one (X25519) $kx µs;"
    echo "  rustls' server side of a whole handshake in memory (no sockets): full $(echo "${R[floor.rustls_us]}" | median) µs, resumed $(echo "${R[floor.rustls_rs_us]}" | median) µs"
    for px in $PROXIES; do
        hs=$(echo "${R[$px.hs_us]:-}" | median); tcp=$(echo "${R[$px.tcp_us]:-}" | median)
        rs=$(echo "${R[$px.rs_us]:-}" | median)
        awk -v p="$px" -v h="$hs" -v t="$tcp" -v r="$rs" -v c="$crypto" -v k="$kx" 'BEGIN {
            if (h == "-" || c == "-" || c <= 0) exit
            printf "  %s: full handshake %.2fx the floor (crypto + its own plain TCP connection, %.0f µs)", p, h / (c + t), c + t
            if (r != "-") printf ", resumed %.2fx (%.0f µs)", r / (k + t), k + t
            printf "\n" }'
    done
fi
[ -n "${SCALE_LINE:-}" ] && echo "$SCALE_LINE"
if [ "$RUNS" -gt 1 ]; then
    echo "each run, in order (the table shows their medians):"
    for key in hs_us hs_seq_us hs_cert_us rs_us rs_cert_us tcp_us bulk_ms idle_kib add50 add99 addpy50 addpy99 py_cpu; do
        line="  $key:"
        for px in $PROXIES; do line="$line $px [$(echo ${R[$px.$key]:-})]"; done
        echo "$line"
    done
fi
echo "runtime: $((T_END - T_START)) s"
