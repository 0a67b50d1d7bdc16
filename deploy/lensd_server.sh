# Sourced by the scripts that run a lensd of their own (deploy/demo.sh,
# deploy/training/train_demo_lens.sh, clients/examples_agree.sh):
#   lensd_start <lensd binary> <role> [lensd flags...]
# makes a fresh token of <role> (tenant "script"), starts lensd on a free loopback port with auth
# on, its tokens file, port file, state and log in a temporary folder ($lensd_work), waits until
# it serves, exports LENSD_ADDRESS and LENSD_TOKEN for lensctl and the clients, and stops the
# server and removes the folder when the script exits.
lensd_start() {
  local binary=$1 role=$2
  shift 2
  lensd_work=$(mktemp -d)
  local token_output
  token_output=$("$binary" token --tenant=script --role="$role")
  export LENSD_TOKEN
  LENSD_TOKEN=$(sed -n 's/^token: //p' <<<"$token_output")
  sed -n 's/^tokens file line: //p' <<<"$token_output" > "$lensd_work/tokens.txt"
  "$binary" --tokens_file="$lensd_work/tokens.txt" --address=127.0.0.1:0 \
    --metrics_address=127.0.0.1:0 --port_file="$lensd_work/port.json" \
    --state_dir="$lensd_work/state" --log_requests=false "$@" 2> "$lensd_work/lensd.log" &
  lensd_pid=$!
  trap lensd_stop EXIT
  for _ in $(seq 300); do
    [ -s "$lensd_work/port.json" ] && grep -q "serving" "$lensd_work/lensd.log" && break
    kill -0 "$lensd_pid" 2>/dev/null || { cat "$lensd_work/lensd.log"; return 1; }
    sleep 0.1
  done
  export LENSD_ADDRESS
  LENSD_ADDRESS=127.0.0.1:$(sed -n 's/.*"port": \([0-9]*\),.*/\1/p' "$lensd_work/port.json")
}

lensd_stop() {
  kill -TERM "$lensd_pid" 2>/dev/null && wait "$lensd_pid" || true
  rm -rf "$lensd_work"
}
