#!/usr/bin/env bash
# Runs ON the GPU machine after scripts/gpu/run-tests.sh --cli-only built build-gpu, in the same
# `run` call (carry: [".gpudeps"]): serving benchmarks of Nano NVFP4 (real shape, random weights).
#   bash scripts/gpu/run-tests.sh --cli-only && bash scripts/gpu/serve-bench.sh [serve flags...]
# Serve flags default to --max-num-seqs 64. Steps (each one's log in $OUT; a failed step prints
# its log's tail and "== <step> FAILED", the others still run; exit status 1 if any failed):
#  1. synth: the checkpoint at $MODEL_ROOT/model-nano-nvfp4 (as bench-real.sh; kept), plus a
#     tokenizer for it: the demo model's (models/demo), its vocabulary extended to the model's
#     vocab_size with one plain token per extra id (" w<id>"), so that every generated token
#     decodes to text and streams as its own chunk (ITL per token)
#  2. bench: nemotron bench (depths, prefill, --batch $BATCH) --json bench.json
#  3. read: time to read the checkpoint's *.safetensors with cat > /dev/null (cold page cache
#     where `echo 3 > /proc/sys/vm/drop_caches` is allowed, else warm; said in the output)
#  4. start-up: time from launching `serve --device cuda` to /health 200 (page cache dropped
#     again first where allowed); the server runs on for steps 5 and 6 and is stopped on any exit (trap)
#  5. load: load.py --completions (128-token id prompts, 128 out, ignore_eos) at concurrency
#     $LEVELS, greedy, then temperature 0.7 top_p 0.95 (seeded), after a short warm-up that
#     captures the decode graphs; each run under a time limit (its JSON is rewritten per level)
#  5e. steps: the server's step log (--step-log steps.csv) summed per load run by bench/step_log.py
#  6. memory: nvidia-smi memory in use (after start-up and after the load) next to the plan the
#     server printed; /metrics saved
#  7. summary: serve-bench.json (every number above and the files' names); plots when this
#     python3 has matplotlib (else run bench/plot.py on the JSON files elsewhere)
# Environment (defaults): MODEL (nano-nvfp4; nano-mtp-nvfp4: Nano with a Super-like MTP head, so
# `serve` speculates: its random head is never right, which measures what keeping the head fed
# and probing costs; super-nvfp4: Super with its MTP head, in /dev/shm, for an H200), MODEL_ROOT (/tmp), MODEL_DIR (the synthesized checkpoint; another
# model directory skips step 1's synth), NEMOTRON (build-gpu/nemotron, built here), DEVICE (cuda),
# PORT (8080), BATCH (1,2,4,8,16,32,64,128,256), LEVELS (1,8,32,64), GREEDY_REQS (8,32,64,128),
# SAMPLED_REQS (4,8,32,64), PROMPT_TOKENS (128), MAX_TOKENS (128), SKIP_BENCH (0), LOAD_PROCESSES
# (1: load.py's client threads in one Python process; P: spread over P processes),
# CONSTRAINED_BODY (unset: no constrained run; a JSON object of request fields, step 5b),
# AGENT_ARGS (unset: no agent run; bench/agent.py flags, step 5c), SOAK_SECONDS (unset: no
# soak; bench/soak.py for that long, step 5d) and SOAK_CLIENTS (64). The server inherits the
# environment, so the A/B switches reach it (NEMOTRON_PREFILL_SHARES=equal: the old prefill
# order, docs/serving.md).
# Meant to finish in about 6 minutes on an H100, synth included (not yet measured there); the
# load runs are capped at 120 s (warm-up), 120 s (greedy) and 240 s (sampled: the sampler sorts
# the vocabulary on the host for every token). A CPU dry run of everything but step 2:
#   MODEL_DIR=DIR DEVICE=cpu NEMOTRON=build/nemotron SKIP_BENCH=1 LEVELS=1,4 GREEDY_REQS=4 \
#   SAMPLED_REQS=4 MAX_TOKENS=16 bash scripts/gpu/serve-bench.sh --max-num-seqs 4 --memory 2
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root" || exit 1
out="${OUT:-$root/gpu-logs}"
mkdir -p "$out"
export LD_LIBRARY_PATH="/tmp/gpudeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
serve_flags=("$@")
[ ${#serve_flags[@]} -eq 0 ] && serve_flags=(--max-num-seqs 64)
device="${DEVICE:-cuda}"
port="${PORT:-8080}"
batch="${BATCH:-1,2,4,8,16,32,64,128,256}"
levels="${LEVELS:-1,8,32,64}"
greedy_reqs="${GREEDY_REQS:-8,32,64,128}"
sampled_reqs="${SAMPLED_REQS:-4,8,32,64}"
prompt_tokens="${PROMPT_TOKENS:-128}"
max_tokens="${MAX_TOKENS:-128}"
url="http://127.0.0.1:$port"
failed=()
summary="$out/serve-bench.log"
say() { echo "== $*" | tee -a "$summary"; }
fail() { failed+=("$1"); say "$1 FAILED${2:+: $2}"; }
# Runs a step with its output in $out/<name>.log; on failure prints the log's tail. In the
# background + wait, so that a signal reaches the traps at once (they stop the step too).
step_pid=""
step() {
  local name="$1"; shift
  local t0=$SECONDS
  "$@" > "$out/$name.log" 2>&1 &
  step_pid=$!
  wait "$step_pid"
  local rc=$?
  step_pid=""
  if [ $rc -ne 0 ]; then
    tail -25 "$out/$name.log"
    local why="exit status $rc"
    [ $rc -eq 124 ] && why="timed out"
    fail "$name" "$why after $(( SECONDS - t0 )) s (log: $name.log)"
  else
    say "$name: $(( SECONDS - t0 )) s"
  fi
  return $rc
}
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
drop_caches() { sync && { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; }
http_code() {  # HTTP status of GET $1, 000 when nothing answers
  if command -v curl > /dev/null; then
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$1"
    return 0
  fi
  python3 - "$1" <<'EOF'
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
}

server_pid=""
stop_server() {
  [ -n "$server_pid" ] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$server_pid" 2>/dev/null; then
      say "server did not stop within 20 s of SIGTERM: killed"
      kill -KILL "$server_pid" 2>/dev/null
    fi
  fi
  wait "$server_pid" 2>/dev/null
  say "server stopped (exit status $?)"
  server_pid=""
}
on_signal() {
  say "interrupted"
  [ -n "$step_pid" ] && kill -TERM "$step_pid" 2>/dev/null
  exit 130
}
trap stop_server EXIT
trap on_signal INT TERM

say "serve-bench on $(hostname), $(date -u +%FT%TZ), serve flags: ${serve_flags[*]}"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$summary"
else
  say "nvidia-smi not found"
fi

# 1. Binary, checkpoint, tokenizer.
if [ -z "${NEMOTRON:-}" ]; then
  NEMOTRON=build-gpu/nemotron
  step build-cli cmake --build build-gpu -j16 --target nemotron || exit 1
fi
[ -x "$NEMOTRON" ] || { fail binary "$NEMOTRON is not an executable"; exit 1; }
model="${MODEL:-nano-nvfp4}"
synth_quant=(--quant tests/data/configs/nano-30b-a3b.nvfp4.hf_quant_config.json)
root_default=/tmp
case "$model" in
  nano-nvfp4) synth_cfg=tests/data/configs/nano-30b-a3b.config.json ;;
  nano-mtp-nvfp4) synth_cfg=tests/data/configs/nano-30b-a3b-mtp.config.json ;;  # speculation on by default
  # Super with its MTP head (80 GB: /dev/shm, as bench-real.sh puts it; an H200 holds it)
  super-nvfp4) synth_cfg=tests/data/configs/super-120b-a12b.config.json; synth_quant=(--layout super-mixed)
    root_default=/dev/shm ;;
  *) fail model "unknown MODEL $model (nano-nvfp4 | nano-mtp-nvfp4 | super-nvfp4)"; exit 1 ;;
esac
dir="${MODEL_DIR:-${MODEL_ROOT:-$root_default}/model-$model}"
if [ ! -f "$dir/config.json" ]; then
  step synth "$NEMOTRON" synth --config "$synth_cfg" "${synth_quant[@]}" --out "$dir" --quiet || exit 1
fi
vocab=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$dir/config.json") \
  || { fail config "cannot read vocab_size from $dir/config.json"; exit 1; }
tokenizer_py=$(cat <<'EOF'
# The demo tokenizer with its vocabulary extended to the model's: every id without a token gets
# "Ġw<id>" (byte-level: decodes to " w<id>"), reachable by no merge, so encoding is unchanged.
import json, shutil, sys
src, dst, V = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = json.load(open(f"{src}/tokenizer.json", encoding="utf-8"))
vocab = t["model"]["vocab"]
used = set(vocab.values()) | {a["id"] for a in t.get("added_tokens", [])}
added = 0
for i in range(V):
    if i not in used:
        name = f"\u0120w{i}"
        assert name not in vocab, name
        vocab[name] = i
        added += 1
with open(f"{dst}/tokenizer.json", "w", encoding="utf-8") as f:
    json.dump(t, f, ensure_ascii=False)
shutil.copy(f"{src}/tokenizer_config.json", f"{dst}/tokenizer_config.json")
print(f"tokenizer: {len(vocab)} tokens ({added} added up to vocab_size {V})")
EOF
)
if [ ! -f "$dir/tokenizer.json" ]; then
  step tokenizer python3 -c "$tokenizer_py" models/demo "$dir" "$vocab" || exit 1
fi
ckpt_bytes=$(du -cb "$dir"/*.safetensors | tail -1 | cut -f1)
say "checkpoint $dir: $(du -sh "$dir" | cut -f1), vocab $vocab"

# 2. nemotron bench (GPU only).
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  step bench "$NEMOTRON" bench --model "$dir" --batch "$batch" --json "$out/bench.json" \
    && grep -v "uploading weights" "$out/bench.log" | grep -v "^$" | head -60
fi

# 3. Reading the checkpoint files.
cache=warm
if drop_caches; then cache=cold; fi
t0=$(now)
if cat "$dir"/*.safetensors > /dev/null; then
  read_s=$(elapsed "$t0" "$(now)")
  say "read $ckpt_bytes bytes of safetensors with cat: $read_s s ($cache page cache)"
else
  read_s=null
  fail read "cat of $dir/*.safetensors"
fi

# 4. Start-up: launch to /health 200.
start_cache=warm
if drop_caches; then start_cache=cold; fi
t0=$(now)
"$NEMOTRON" serve --model "$dir" --device "$device" --port "$port" --step-log "$out/steps.csv" "${serve_flags[@]}" \
  > "$out/serve.log" 2>&1 &
server_pid=$!
startup_s=null
for _ in $(seq 1 3000); do  # up to ~10 minutes
  if ! kill -0 "$server_pid" 2>/dev/null; then
    wait "$server_pid"; rc=$?; server_pid=""
    tail -30 "$out/serve.log"
    fail startup "serve exited with status $rc before /health answered 200"
    break
  fi
  if [ "$(http_code "$url/health")" = 200 ]; then
    startup_s=$(elapsed "$t0" "$(now)")
    say "start-up: $startup_s s from launch to /health 200 ($start_cache page cache)"
    grep -v "uploading weights" "$out/serve.log" | head -20
    break
  fi
  sleep 0.2
done
[ "$startup_s" = null ] && [ -n "$server_pid" ] && { tail -30 "$out/serve.log"; fail startup "no /health 200 in time"; }

gpu_memory() {  # "used MiB / total MiB" of GPU 0 and the server process's MiB
  if command -v nvidia-smi > /dev/null; then
    echo "gpu: $(nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader | head -1)"
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | grep "^$server_pid," \
      | sed 's/^/server process (pid, used): /'
  else
    echo "gpu: nvidia-smi not found"
  fi
}
if [ -n "$server_pid" ]; then
  { echo "after start-up:"; gpu_memory; } > "$out/memory.log" 2>&1

  # The server's own TTFT split, per load run, from /metrics before and after it: mean TTFT
  # (from the request's arrival) = queue (submit to the first step) + prefill (that step to the
  # first token) + the rest (arrival to submit: waiting for a worker, parsing, tokenizing).
  metric_sums() {
    python3 - "$url/metrics" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
def total(name):
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name + "{") or l.startswith(name + " "))
print(*(total("nemotron:" + n) for n in ("time_to_first_token_seconds_sum", "time_to_first_token_seconds_count",
                                         "request_queue_time_seconds_sum", "request_prefill_time_seconds_sum")))
EOF
  }
  server_split() {  # metric_sums before, after
    python3 -c "
import sys
a, b = [list(map(float, x.split())) for x in sys.argv[1:3]]
n = b[1] - a[1]
t, q, p = ((b[i] - a[i]) / n * 1e3 for i in (0, 2, 3)) if n > 0 else (0, 0, 0)
print(f'      server: TTFT mean {t:.1f} ms from arrival = queue {q:.1f} + prefill {p:.1f} + before the engine {t - q - p:.1f}' if n > 0 else '      server: no first token')" "$1" "$2"
  }
  # A load run with the server's split appended to its log: name, then the command.
  load_step() {
    local name="$1" m0 m1 rc; shift
    m0=$(metric_sums 2>/dev/null)
    step "$name" "$@"
    rc=$?
    m1=$(metric_sums 2>/dev/null)
    [ -n "$m0" ] && [ -n "$m1" ] && server_split "$m0" "$m1" >> "$out/$name.log"
    return $rc
  }

  # 5. Load: warm-up, greedy, sampled.
  common=(--url "$url" --completions --vocab-size "$vocab" --prompt-tokens "$prompt_tokens"
          --max-tokens "$max_tokens" --ignore-eos --concurrency "$levels" --processes "${LOAD_PROCESSES:-1}")
  step warmup timeout 120 python3 bench/load.py "${common[@]}" --num-requests "$levels" --max-tokens 8
  load_step load-greedy timeout 120 python3 bench/load.py "${common[@]}" --num-requests "$greedy_reqs" \
    --label "greedy, ${serve_flags[*]}" --json "$out/load-greedy.json"
  cat "$out/load-greedy.log"
  load_step load-sampled timeout 240 python3 bench/load.py "${common[@]}" --num-requests "$sampled_reqs" \
    --temperature 0.7 --top-p 0.95 --seed 1 --label "T 0.7 top_p 0.95, ${serve_flags[*]}" \
    --json "$out/load-sampled.json"
  cat "$out/load-sampled.log"
  # 5b. Constrained decoding (CONSTRAINED_BODY, e.g. '{"guided_regex": "[ a-z0-9]*"}': every
  # step masked, with a mask of most of the vocabulary): greedy at the same levels, to set
  # against load-greedy for the masks' cost.
  if [ -n "${CONSTRAINED_BODY:-}" ]; then
    load_step load-constrained timeout 180 python3 bench/load.py "${common[@]}" --num-requests "$greedy_reqs" \
      --extra-body "$CONSTRAINED_BODY" --label "greedy constrained $CONSTRAINED_BODY, ${serve_flags[*]}" \
      --json "$out/load-constrained.json"
    cat "$out/load-constrained.log"
  fi

  # 5c. The multi-turn agent benchmark (AGENT_ARGS, e.g. "--turns 10 --prefix-tokens 16000
  # --turn-tokens 300 --max-tokens 64 --concurrency 1,8"; issue 15's prefix cache): bench/agent.py
  # against this server, greedy, ignore_eos.
  if [ -n "${AGENT_ARGS:-}" ]; then
    # shellcheck disable=SC2086  # AGENT_ARGS is a list of flags
    step agent timeout 300 python3 bench/agent.py --url "$url" --ignore-eos $AGENT_ARGS \
      --label "agent, ${serve_flags[*]}" --json "$out/agent.json"
    cat "$out/agent.log"
  fi

  # 5d. Soak (SOAK_SECONDS, e.g. 600; issue 18): bench/soak.py, 64 clients (SOAK_CLIENTS) of
  # mixed streaming / non-streaming chats with n > 1 and random disconnects; errors, the
  # server's RSS and the GPU memory sampled every 10 s must stay flat.
  if [ -n "${SOAK_SECONDS:-}" ]; then
    host_cache=()
    [ "$device" = cpu ] && host_cache=(--host-prefix-cache)
    step soak timeout $(( SOAK_SECONDS + 400 )) python3 bench/soak.py --url "$url" --server-pid "$server_pid" \
      --duration "$SOAK_SECONDS" --concurrency "${SOAK_CLIENTS:-64}" --ignore-eos "${host_cache[@]}" \
      --json "$out/soak.json"
    tail -25 "$out/soak.log"
  fi

  # 5e. Where the server's time went: the step log summed per load run (segments).
  python3 bench/step_log.py "$out/steps.csv" --json "$out/steps.json" > "$out/steps.log" 2>&1 \
    || fail steps "bench/step_log.py"
  cat "$out/steps.log"

  # 6. Memory: nvidia-smi next to the plan; metrics.
  { echo "after the load:"; gpu_memory; echo; echo "plan printed by serve:";
    sed -n '/^memory plan/,/max model length/p' "$out/serve.log"; } >> "$out/memory.log" 2>&1
  cat "$out/memory.log"
  python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())" \
    "$url/metrics" > "$out/metrics.txt" 2>&1 || fail metrics "GET /metrics"
fi
stop_server

# 7. Summary and plots.
python3 - "$out" "$dir" "$ckpt_bytes" "$read_s" "$cache" "$startup_s" "$start_cache" "${serve_flags[*]}" \
  "${failed[*]:-}" <<'EOF' || fail summary "writing serve-bench.json"
import json, os, sys
out, model, ckpt_bytes, read_s, cache, startup_s, start_cache, flags, failed = sys.argv[1:10]
num = lambda s: None if s == "null" else float(s)
def text(name):
    p = os.path.join(out, name)
    return open(p).read() if os.path.exists(p) else None
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
s = {"model": model, "serve_flags": flags.split(),
     "checkpoint": {"bytes": int(ckpt_bytes), "cat_s": num(read_s), "page_cache": cache,
                    "gb_s": int(ckpt_bytes) / 1e9 / num(read_s) if num(read_s) else None},
     "startup": {"launch_to_health_200_s": num(startup_s), "page_cache": start_cache},
     "memory": text("memory.log"), "bench": load("bench.json"),
     "load_greedy": load("load-greedy.json"), "load_sampled": load("load-sampled.json"),
     "load_constrained": load("load-constrained.json"), "agent": load("agent.json"), "soak": load("soak.json"),
     "failed_steps": failed.split()}
json.dump(s, open(os.path.join(out, "serve-bench.json"), "w"), indent=2)
print("wrote", os.path.join(out, "serve-bench.json"))
EOF
if python3 -c "import matplotlib" 2> /dev/null; then
  jsons=()
  for f in bench.json load-greedy.json load-sampled.json; do [ -f "$out/$f" ] && jsons+=("$out/$f"); done
  [ ${#jsons[@]} -gt 0 ] && { python3 bench/plot.py --out "$out/plots" "${jsons[@]}" || fail plots "bench/plot.py"; }
else
  say "plots: no matplotlib here; run bench/plot.py --out DIR on bench.json load-greedy.json load-sampled.json"
fi
if [ ${#failed[@]} -gt 0 ]; then say "FAILED steps: ${failed[*]}"; exit 1; fi
say "all steps passed"
