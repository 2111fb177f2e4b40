# shellcheck shell=bash disable=SC2034  # variables here are read by the sourcing scripts
# Shared functions of scripts/bench-wrk and scripts/bench-peer (sourced, not run): options, tools, a throwaway
# `tessera serve` on loopback, wrk runs and their summary, cleanup. Everything listens on 127.0.0.1 only and every
# load run stops by itself.
#
# After bench_init, BENCH_TMP is a private temp dir (also TMPDIR for what the scripts start), and on exit, however
# the script ends, every process started with bench_spawn or bench_bounded is stopped and the temp dir removed.
# Those processes run in their own process group (setsid), stopped as a group: that reaches their children too
# (oidc-provider's cluster workers, the server `tessera-bench` starts).

BENCH_USER=bench
BENCH_PASSWORD='bench password 0123456789'
BENCH_FORM='application/x-www-form-urlencoded'

# Load settings; bench_parse_option sets them, bench_check_load validates them.
BENCH_DURATION=10s
BENCH_CONNECTIONS=64
BENCH_THREADS=1

bench_die() {
  echo "${BENCH_NAME:-$(basename "$0")}: $*" >&2
  exit 1
}

bench_note() {
  echo "${BENCH_NAME:-$(basename "$0")}: $*" >&2
}

# --- temp dir, child processes, cleanup ----------------------------------------------------------------------

# Process groups still running (a group's id is its leader's pid).
BENCH_GROUPS=()

bench_cleanup() {
  local group
  for group in "${BENCH_GROUPS[@]}"; do
    bench_stop "$group"
  done
  if [ -n "${BENCH_TMP:-}" ] && [ -d "$BENCH_TMP" ]; then
    rm -rf -- "$BENCH_TMP"
  fi
}

bench_init() {
  BENCH_NAME=$1
  BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$BENCH_NAME.XXXXXX")
  export TMPDIR=$BENCH_TMP
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# bench_group COMMAND...: starts COMMAND in the background as the leader of a new process group (setsid execs it
# in place: a background job of a script is no group leader) and sets GROUP to its pid.
bench_group() {
  setsid "$@" &
  GROUP=$!
  BENCH_GROUPS+=("$GROUP")
}

# bench_forget GROUP: gone and reaped, no longer ours to stop.
bench_forget() {
  local group kept=()
  for group in "${BENCH_GROUPS[@]}"; do
    [ "$group" = "$1" ] || kept+=("$group")
  done
  BENCH_GROUPS=("${kept[@]}")
}

# bench_stop GROUP: TERM to the whole group, KILL to what is left after 5 s, and reap the leader.
bench_stop() {
  if kill -TERM -- "-$1" 2>/dev/null; then
    for _ in $(seq 50); do
      kill -0 -- "-$1" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$1" 2>/dev/null || true
  fi
  wait "$1" 2>/dev/null || true
  bench_forget "$1"
}

# bench_bounded SECONDS COMMAND...: runs COMMAND for at most SECONDS (then TERM, and KILL 5 s later) and returns
# its exit status. In the background, so that a signal to this script stops it at once.
bench_bounded() {
  local limit=$1 rc=0
  shift
  bench_group timeout -k 5 "$limit" "$@"
  wait "$GROUP" || rc=$?
  bench_stop "$GROUP"
  return "$rc"
}

# bench_spawn LOG COMMAND...: starts COMMAND in the background, stdout to LOG.out and stderr to LOG.err, waits for
# its first stdout line `listening on http://ADDR` (30 s at most) and sets SPAWNED_PID and SPAWNED_URL.
bench_spawn() {
  local log=$1 line=
  shift
  bench_group "$@" >"$log.out" 2>"$log.err"
  SPAWNED_PID=$GROUP
  for _ in $(seq 300); do
    # Only a whole line (read fails on a line still being written).
    IFS= read -r line <"$log.out" && break
    line=
    case "$(ps -o stat= -p "$SPAWNED_PID")" in "" | Z*) break ;; esac # exited
    sleep 0.1
  done
  case "$line" in
    "listening on http://"*) SPAWNED_URL=${line#listening on } ;;
    *)
      cat "$log.err" >&2
      bench_die "$(basename "$log") did not start (first line: '${line}')"
      ;;
  esac
}

# --- options and tools ------------------------------------------------------------------------------------------

# bench_parse_option NAME VALUE: handles the load options every script shares; returns 1 for an unknown NAME.
bench_parse_option() {
  case "$1" in
    --duration) BENCH_DURATION=$2 ;;
    --connections) BENCH_CONNECTIONS=$2 ;;
    --threads) BENCH_THREADS=$2 ;;
    *) return 1 ;;
  esac
}

# Validates the load settings and sets BENCH_SECONDS. Like `tessera-bench`: between 1 s and 5 min.
bench_check_load() {
  local n
  case "$BENCH_DURATION" in
    *[!0-9smh]* | "" | [smh]*) bench_die "--duration: seconds, or a number and s, m or h (got '$BENCH_DURATION')" ;;
    *s) n=${BENCH_DURATION%s} ;;
    *m) n=$((${BENCH_DURATION%m} * 60)) ;;
    *h) n=$((${BENCH_DURATION%h} * 3600)) ;;
    *) n=$BENCH_DURATION ;;
  esac
  case "$n" in *[!0-9]* | "") bench_die "--duration: not a duration: '$BENCH_DURATION'" ;; esac
  { [ "$n" -ge 1 ] && [ "$n" -le 300 ]; } || bench_die "--duration: between 1s and 5m (got '$BENCH_DURATION')"
  BENCH_SECONDS=$n
  case "$BENCH_CONNECTIONS$BENCH_THREADS" in *[!0-9]* | "") bench_die "--connections and --threads are numbers" ;; esac
  { [ "$BENCH_CONNECTIONS" -ge 1 ] && [ "$BENCH_CONNECTIONS" -le 1024 ]; } || bench_die "--connections: 1 to 1024"
  { [ "$BENCH_THREADS" -ge 1 ] && [ "$BENCH_THREADS" -le "$BENCH_CONNECTIONS" ]; } \
    || bench_die "--threads: 1 to the number of connections"
}

# bench_need COMMAND:DEBIAN_PACKAGE...: installs what is missing when root on Debian, else fails naming it.
bench_need() {
  local entry missing=()
  for entry in "$@"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    bench_note "installing ${missing[*]}"
    if ! { apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
      bench_die "could not install ${missing[*]} (apt-get install ${missing[*]})"
    fi
  else
    bench_die "missing Debian packages: ${missing[*]} (install them: apt-get install ${missing[*]})"
  fi
}

# bench_tessera_binary ROOT: sets TESSERA to the absolute path of $TESSERA, by default ROOT/target/release/tessera.
bench_tessera_binary() {
  TESSERA=${TESSERA:-$1/target/release/tessera}
  [ -x "$TESSERA" ] || bench_die "no tessera binary at '$TESSERA' (cargo build --release, or set TESSERA)"
  TESSERA=$(cd "$(dirname "$TESSERA")" && pwd)/$(basename "$TESSERA")
}

# bench_tessera_bench_binary ROOT: sets TESSERA_BENCH to the absolute path of $TESSERA_BENCH, by default
# ROOT/target/release/tessera-bench: the load generator (crates/tessera-bench), run against $TESSERA.
bench_tessera_bench_binary() {
  TESSERA_BENCH=${TESSERA_BENCH:-$1/target/release/tessera-bench}
  [ -x "$TESSERA_BENCH" ] ||
    bench_die "no tessera-bench binary at '$TESSERA_BENCH' (cargo build --release -p tessera-bench, or set TESSERA_BENCH)"
  TESSERA_BENCH=$(cd "$(dirname "$TESSERA_BENCH")" && pwd)/$(basename "$TESSERA_BENCH")
}

# --- a throwaway Tessera ----------------------------------------------------------------------------------------

# tessera_start ALG: a fresh `tessera serve` on 127.0.0.1 with its own data dir, the benchmark user and the
# benchmark client (audience api, scope read), configured as `tessera-bench` configures it. Sets TESSERA_URL,
# TESSERA_PID and TESSERA_SECRET. Extra settings: export TESSERA_* variables before calling.
tessera_start() {
  local alg=$1 dir
  dir=$(mktemp -d "$BENCH_TMP/tessera-$alg.XXXXXX")
  local run=(env -u TESSERA_CONFIG -C "$dir" TESSERA_DATA_DIR="$dir/data" TESSERA_KEYS__ALGORITHM="$alg"
    TESSERA_RATE_LIMITS__LOGIN_PER_IP=100000000 TESSERA_RATE_LIMITS__LOGIN_PER_USER=100000000 RUST_LOG=warn
    "$TESSERA")
  printf '%s\n' "$BENCH_PASSWORD" | "${run[@]}" user add "$BENCH_USER" --password-stdin >/dev/null \
    || bench_die "tessera user add failed"
  TESSERA_SECRET=$("${run[@]}" client add bench --audience api --scope read --json | jq -er .client_secret) \
    || bench_die "tessera client add gave no client secret"
  bench_spawn "$dir/serve" "${run[@]}" serve --listen 127.0.0.1:0
  TESSERA_PID=$SPAWNED_PID
  TESSERA_URL=$SPAWNED_URL
}

# The benchmark client's client_secret_post fields.
tessera_client_auth() {
  printf 'client_id=bench&client_secret=%s' "$(bench_urlencode "$TESSERA_SECRET")"
}

# The client_credentials form `tessera-bench client-credentials` posts.
tessera_cc_form() {
  printf 'grant_type=client_credentials&%s' "$(tessera_client_auth)"
}

# tessera_login: an access token of the benchmark user (audience: the server's default user audience).
tessera_login() {
  local body
  body=$(jq -cn --arg u "$BENCH_USER" --arg p "$BENCH_PASSWORD" \
    '{username: $u, password: $p, refresh_token_delivery: "body"}')
  curl -sf "$TESSERA_URL/auth/login" -H 'content-type: application/json' -d "$body" | jq -er .access_token \
    || bench_die "login as the benchmark user failed"
}

# --- HTTP helpers -----------------------------------------------------------------------------------------------

bench_urlencode() {
  jq -rn --arg v "$1" '$v | @uri'
}

# bench_token URL FORM: POSTs FORM and prints the access_token of the answer; fails loudly otherwise.
bench_token() {
  local answer
  answer=$(curl -s -w '\n%{http_code}' "$1" -H "content-type: $BENCH_FORM" --data-binary "$2") \
    || bench_die "POST $1 failed"
  [ "${answer##*$'\n'}" = 200 ] || bench_die "POST $1: HTTP ${answer##*$'\n'}: ${answer%$'\n'*}"
  jq -er .access_token <<<"${answer%$'\n'*}" || bench_die "POST $1: no access_token in ${answer%$'\n'*}"
}

# bench_jwt_part TOKEN INDEX: the decoded (not verified) header (0) or payload (1) of a compact JWS, as JSON.
bench_jwt_part() {
  jq -Rc --argjson i "$2" 'split(".")[$i] | gsub("-"; "+") | gsub("_"; "/") | @base64d | fromjson' <<<"$1"
}

# bench_check_jwt WHAT TOKEN ALG: fails unless TOKEN is a JWT access token signed with ALG, for audience `api`
# with scope `read` (what both systems are asked for, so that they issue the same token).
bench_check_jwt() {
  local header payload
  if ! header=$(bench_jwt_part "$2" 0 2>/dev/null) || ! payload=$(bench_jwt_part "$2" 1 2>/dev/null); then
    bench_die "$1: not a JWT: $2"
  fi
  jq -e --arg alg "$3" '.alg == $alg and .typ == "at+jwt"' <<<"$header" >/dev/null \
    || bench_die "$1: expected an at+jwt signed with $3, got header $header"
  jq -e '.aud == "api" and .scope == "read"' <<<"$payload" >/dev/null \
    || bench_die "$1: expected aud api and scope read, got $payload"
}

# bench_post_lua FILE FORM: a wrk script that POSTs FORM as a form body.
bench_post_lua() {
  # FORM is URL-encoded: no quote or bracket can end the Lua long string early.
  cat >"$1" <<EOF
wrk.method = "POST"
wrk.body = [[$2]]
wrk.headers["Content-Type"] = "$BENCH_FORM"
EOF
}

# --- wrk runs and the results table -----------------------------------------------------------------------------

BENCH_ROWS=()
BENCH_FAILED=0

# bench_ms VALUE: a wrk latency (850.00us, 1.84ms, 1.02s, 1.50m) in milliseconds.
bench_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; unit = v; sub(/^[0-9.]+/, "", unit)
    split("us 0.001 ms 1 s 1000 m 60000 h 3600000", t)
    for (i = 1; i < 10; i += 2) if (t[i] == unit) { printf "%.2f", n * t[i + 1]; exit }
    print "?"
  }'
}

# bench_wrk SYSTEM ALG SCENARIO URL WRK_ARGS...: a 1 s warm-up (discarded), then the measured wrk run with the
# load settings. Prints one summary line, adds a row to the table, and marks the run failed on any non-2xx
# response or socket error. wrk's request timeout is 10 s rather than its 2 s: a request it times out is left
# out of its latency figures, so a short timeout would flatter a slow server's p99 (and it still counts as an
# error).
bench_wrk() {
  local system=$1 alg=$2 scenario=$3 url=$4 out rps p50 p99 non2xx sockerr requests
  shift 4
  local wrk=(wrk -t "$BENCH_THREADS" -c "$BENCH_CONNECTIONS" --timeout 10s "$@")
  out="$BENCH_TMP/wrk-${#BENCH_ROWS[@]}.txt"
  bench_bounded 30 "${wrk[@]}" -d 1s "$url" >/dev/null || bench_die "wrk warm-up failed ($system $alg $scenario)"
  bench_bounded $((BENCH_SECONDS + 60)) "${wrk[@]}" -d "$BENCH_SECONDS"s --latency "$url" >"$out" \
    || { cat "$out" >&2; bench_die "wrk failed ($system $alg $scenario)"; }
  rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
  requests=$(awk '/requests in/ {print $1}' "$out")
  p50=$(bench_ms "$(awk '$1 == "50%" {print $2}' "$out")")
  p99=$(bench_ms "$(awk '$1 == "99%" {print $2}' "$out")")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
  sockerr=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$out")
  non2xx=${non2xx:-0}
  sockerr=${sockerr:-0}
  printf '%-14s %-6s %-20s %8s req/s  p50 %7s ms  p99 %7s ms  %s requests  non-2xx %s  socket errors %s\n' \
    "$system" "$alg" "$scenario" "$rps" "$p50" "$p99" "$requests" "$non2xx" "$sockerr"
  BENCH_ROWS+=("$system|$alg|$scenario|$rps|$p50|$p99|$non2xx|$sockerr")
  if [ "$non2xx" != 0 ] || [ "$sockerr" != 0 ] || [ -z "$rps" ]; then
    bench_note "$system $alg $scenario: $non2xx non-2xx responses, $sockerr socket errors; wrk said:"
    cat "$out" >&2
    BENCH_FAILED=1
  fi
}

# bench_table: the rows so far as a Markdown table.
bench_table() {
  local row
  echo
  echo "| system | alg | scenario | req/s | p50 ms | p99 ms | non-2xx | socket errors |"
  echo "|---|---|---|---:|---:|---:|---:|---:|"
  for row in "${BENCH_ROWS[@]}"; do
    echo "| ${row//|/ | } |"
  done
  echo
  echo "wrk: $BENCH_THREADS thread(s), $BENCH_CONNECTIONS connections, $BENCH_SECONDS s after a 1 s warm-up;" \
    "$(nproc) CPUs"
}
