#!/usr/bin/env bash
# mica chat: driven through a pipe and through tmux (as a person would), on the
# converted stories260K model (no chat template: the ChatML fallback).
# Checks that context is kept across turns and that each later turn evaluates
# only the new tokens (the counters mica prints on stderr), /save and /load,
# and bad input (long line, empty message, bad /load file).
set -u
B=${MICA_BUILD:-build}; D=${MICA_TESTDATA:-../shared/testdata}
T="$B/test-tmp/chat"; mkdir -p "$T"
pass=0 fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
M="$B/test-tmp/golden/stories260K.gguf"
[ -f "$M" ] || "$B/mica" convert llama2c "$D/tinystories/stories260K.bin" "$D/tinystories/tok512.bin" -o "$M" 2>/dev/null
[ -f "$M" ] || { bad "model" "cannot convert stories260K"; echo "chat: $pass passed, $fail failed"; exit 1; }

# counters: "[turn N: E prompt tokens evaluated, R reused from the cache, G generated, ...]"
field() { sed -nE "s/^\[turn $1: ([0-9]+) prompt tokens evaluated, ([0-9]+) reused from the cache, ([0-9]+) generated.*/\\$2/p" "$3"; }

# ---- through a pipe ----
printf 'Once upon a time\nThe cat sat on the mat\n/save %s\nLily went home\n' "$T/saved.txt" |
    timeout 60 "$B/mica" chat -m "$M" --temp 0 -n 8 -t 2 >"$T/pipe.out" 2>"$T/pipe.err"
rc=$?
[ $rc -eq 0 ] && ok "pipe: exit 0" || bad "pipe: exit" "status $rc: $(cat "$T/pipe.err")"
grep -q "no chat template" "$T/pipe.err" && [ "$(grep -c 'no chat template' "$T/pipe.err")" -eq 1 ] &&
    ok "pipe: fallback to ChatML announced once" || bad "pipe: fallback note" "$(cat "$T/pipe.err")"
e1=$(field 1 1 "$T/pipe.err"); r1=$(field 1 2 "$T/pipe.err")
e2=$(field 2 1 "$T/pipe.err"); r2=$(field 2 2 "$T/pipe.err")
e3=$(field 3 1 "$T/pipe.err"); r3=$(field 3 2 "$T/pipe.err")
if [ -n "$e1" ] && [ -n "$e2" ] && [ -n "$e3" ]; then
    ok "pipe: three turns answered"
    [ "$r1" -eq 0 ] && ok "pipe: turn 1 starts from an empty cache" || bad "turn 1 reuse" "$r1"
    # Turn 2 reuses the whole first exchange (turn 1's prompt and its
    # answer) and evaluates only the new message; the same for turn 3.
    g1=$(field 1 3 "$T/pipe.err"); g2=$(field 2 3 "$T/pipe.err")
    [ "$r2" -eq $((e1 + g1)) ] && [ "$e2" -gt 0 ] &&
        ok "pipe: turn 2 evaluates only new tokens ($e2 new, $r2 reused)" || bad "turn 2 reuse" "e2=$e2 r2=$r2 e1=$e1 g1=$g1"
    [ "$r3" -eq $((r2 + e2 + g2)) ] && [ "$e3" -gt 0 ] &&
        ok "pipe: turn 3 evaluates only new tokens ($e3 new, $r3 reused)" || bad "turn 3 reuse" "e3=$e3 r3=$r3"
else
    bad "pipe: turns" "$(cat "$T/pipe.err")"
fi
# The saved conversation holds the first two exchanges, and greedy answers are
# reproducible: a fresh chat loading it answers the third message identically.
[ "$(grep -c '^user ' "$T/saved.txt" 2>/dev/null)" = 2 ] && [ "$(grep -c '^assistant ' "$T/saved.txt")" = 2 ] &&
    ok "/save wrote 4 messages" || bad "/save" "$(cat "$T/saved.txt" 2>&1)"
printf '/load %s\nLily went home\n' "$T/saved.txt" |
    timeout 60 "$B/mica" chat -m "$M" --temp 0 -n 8 -t 1 >"$T/load.out" 2>"$T/load.err"
third=$(tail -n 1 "$T/pipe.out"); again=$(tail -n 1 "$T/load.out")
[ -n "$third" ] && [ "$third" = "$again" ] && ok "/load restores the conversation (same third answer)" ||
    bad "/load" "'$third' vs '$again': $(cat "$T/load.err")"

# ---- bad input: each is reported on stderr and the chat goes on ----
head -c 2000000 /dev/zero | tr '\0' 'a' >"$T/long.txt"; echo >>"$T/long.txt"
printf 'mica-chat 1\nwizard hello\n' >"$T/bad-role.txt"
{ cat "$T/long.txt"; printf '\n   \n/load %s\n/load %s\n/frob\nOnce upon a time\n' "$T/bad-role.txt" "$T/no-such-file"; } |
    timeout 60 "$B/mica" chat -m "$M" --temp 0 -n 4 -t 1 >"$T/badin.out" 2>"$T/badin.err"
rc=$?
grep -q "longer than" "$T/badin.err" && grep -q "empty message" "$T/badin.err" &&
    grep -q "not a saved chat" "$T/badin.err" && grep -q "cannot open" "$T/badin.err" &&
    grep -q "unknown command" "$T/badin.err" && grep -q "^\[turn 1:" "$T/badin.err" && [ $rc -eq 0 ] &&
    ok "bad input reported, chat continues" || bad "bad input" "status $rc: $(cat "$T/badin.err")"

# ---- through tmux, as a person would ----
if command -v tmux >/dev/null 2>&1; then
    S="mica-chat-test-$$"
    tmux kill-session -t "$S" 2>/dev/null
    tmux new-session -d -s "$S" -x 160 -y 50 "$B/mica chat -m $M --temp 0 -n 8 -t 1 2>$T/tmux.err; echo CHAT-EXITED; sleep 30"
    wait_for() { # pattern, seconds
        for _ in $(seq $(($2 * 10))); do
            grep -q -- "$1" "$T/tmux.err" 2>/dev/null && return 0
            tmux capture-pane -p -t "$S" 2>/dev/null | grep -q -- "$1" && return 0
            sleep 0.1
        done
        return 1
    }
    wait_for "mica chat:" 20
    for i in 1 2 3; do
        case $i in 1) msg="Once upon a time";; 2) msg="The dog ran";; 3) msg="Tom was happy";; esac
        tmux send-keys -t "$S" "$msg" Enter
        wait_for "^\[turn $i:" 30 || break
    done
    tmux send-keys -t "$S" "/exit" Enter
    wait_for "CHAT-EXITED" 20
    screen=$(tmux capture-pane -p -t "$S")
    tmux kill-session -t "$S" 2>/dev/null
    e1=$(field 1 1 "$T/tmux.err"); g1=$(field 1 3 "$T/tmux.err")
    e2=$(field 2 1 "$T/tmux.err"); r2=$(field 2 2 "$T/tmux.err"); g2=$(field 2 3 "$T/tmux.err")
    r3=$(field 3 2 "$T/tmux.err")
    if grep -q "CHAT-EXITED" <<<"$screen" && grep -q "> The dog ran" <<<"$screen" && [ -n "$r3" ] &&
       [ "$r2" -eq $((e1 + g1)) ] && [ "$r3" -eq $((r2 + e2 + g2)) ]; then
        ok "tmux: three turns typed at the prompt, context kept (turn 2: $e2 new, $r2 reused)"
    else
        bad "tmux" "screen: $screen / stderr: $(cat "$T/tmux.err")"
    fi
    # Ctrl-C stops a long answer and the chat goes on: a generated tiny model
    # with a 32768-token context answers for many seconds unless interrupted.
    LM="$T/tiny-llama.gguf"
    [ -f "$LM" ] || "$B/mica-gen" --preset tiny-llama --type Q8_0 --seed 3 -o "$LM"
    S2="mica-chat-int-$$"
    : >"$T/int.err"
    tmux new-session -d -s "$S2" -x 160 -y 50 "$B/mica chat -m $LM -c 32768 -n 30000 --temp 0 -t 1 2>$T/int.err; echo CHAT-EXITED; sleep 30"
    for _ in $(seq 200); do tmux capture-pane -p -t "$S2" | grep -q '^> ' && break; sleep 0.1; done
    tmux send-keys -t "$S2" "tell me everything" Enter
    sleep 1
    tmux send-keys -t "$S2" C-c
    for _ in $(seq 300); do grep -q '^\[turn 1:' "$T/int.err" && break; sleep 0.1; done
    tmux send-keys -t "$S2" "and then" Enter
    sleep 1
    tmux send-keys -t "$S2" C-c
    for _ in $(seq 300); do grep -q '^\[turn 2:' "$T/int.err" && break; sleep 0.1; done
    tmux send-keys -t "$S2" "/exit" Enter
    for _ in $(seq 200); do tmux capture-pane -p -t "$S2" | grep -q CHAT-EXITED && break; sleep 0.1; done
    screen2=$(tmux capture-pane -p -t "$S2")
    tmux kill-session -t "$S2" 2>/dev/null
    g1=$(field 1 3 "$T/int.err"); r2=$(field 2 2 "$T/int.err")
    if grep -q '^\[turn 1:.*stopped\]' "$T/int.err" && [ -n "$g1" ] && [ "$g1" -lt 30000 ] &&
       grep -q '^\[turn 2:' "$T/int.err" && [ "${r2:-0}" -gt 0 ] && grep -q CHAT-EXITED <<<"$screen2"; then
        ok "tmux: Ctrl-C stops an answer after $g1 of 30000 tokens; the next turn reuses $r2 cached tokens"
    else
        bad "tmux Ctrl-C" "$(cat "$T/int.err") / $screen2"
    fi
else
    if [ "${CI:-}" = true ]; then bad "tmux" "tmux not installed"; else echo "skip: tmux not installed"; fi
fi

echo "chat: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
