# Shared by loadgen-bench.sh and evloop-bench.sh (sourced, not run): the
# tools check, the release build, and one nginx worker pinned to CPU 0 on a
# free 127.0.0.1 port serving `/` (`return 200 "ok\n"`) and `/small.txt`
# (the same 3 bytes from a file), with its temp directory removed on exit.
# Sets ROOT, LOADGEN, NGINX, T, PORT, URL; defines median.
# Needs BENCH (the script's name, for messages).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
for tool in wrk nginx taskset python3 curl; do
    if ! command -v "$tool" >/dev/null && [ ! -x "/usr/sbin/$tool" ]; then
        echo "$BENCH: $tool is not installed (Debian: apt-get install $tool)" >&2
        exit 1
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -p aif-loadgen --bin aif-loadgen --manifest-path "$ROOT/Cargo.toml" >&2
LOADGEN="$ROOT/target/release/aif-loadgen"

T=$(mktemp -d "/tmp/aif-$BENCH-XXXXXX")
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
NGINX_PID=""
cleanup() {
    if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; fi
    rm -rf "$T"
}
trap cleanup EXIT

# nginx's worker may run as another user (when started as root): it must
# read the file.
mkdir -p "$T/www"
printf 'ok\n' >"$T/www/small.txt"
chmod 755 "$T" "$T/www"
chmod 644 "$T/www/small.txt"
cat >"$T/nginx.conf" <<CONF
daemon off;
worker_processes 1;
worker_cpu_affinity 01;
pid $T/nginx.pid;
error_log $T/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $T/body;
    proxy_temp_path $T/proxy;
    fastcgi_temp_path $T/fastcgi;
    uwsgi_temp_path $T/uwsgi;
    scgi_temp_path $T/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$PORT;
        root $T/www;
        location = / { return 200 "ok\n"; }
    }
}
CONF
"$NGINX" -c "$T/nginx.conf" -p "$T" &
NGINX_PID=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "$URL/small.txt" && break; sleep 0.05; done
curl -sf -o /dev/null "$URL/small.txt" || { echo "$BENCH: nginx did not start:" >&2; cat "$T/error.log" >&2; exit 1; }

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
