#!/usr/bin/env bash
# Install gomaproxy, start it on the embedded backend, compile a C file through it twice
# (the second result comes from the action cache), and stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/setup.sh

work=$(mktemp -d)
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

"$root/.venv/bin/gomaproxy" serve --port 0 --port-file "$work/port" --state-dir "$work/state" \
  --log-format console 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
if [ ! -s "$work/port" ]; then
  echo "demo: the server did not start; its log:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
server="http://127.0.0.1:$(cat "$work/port")"
echo "gomaproxy listens on $server (pid $server_pid)"

cat >"$work/hello.c" <<'C'
#include <stdio.h>

int main(void) {
    printf("hello from a remote compile\n");
    return 0;
}
C

cd "$work"
for round in 1 2; do
  "$root/.venv/bin/gomaproxy" cc --server "$server" --report "report$round.json" \
    -- gcc -O2 -c hello.c -o hello.o
  "$root/.venv/bin/python" - "report$round.json" "$round" <<'PY'
import json
import sys

report = json.load(open(sys.argv[1]))
print(f"compile {sys.argv[2]}: exit {report['exit_status']}, cache {report['cache_hit']}, "
      f"{report['exec_calls']} Exec calls, outputs {', '.join(report['outputs'])}")
PY
done
gcc hello.o -o hello
./hello
