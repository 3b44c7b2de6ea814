#!/usr/bin/env bash
# Expert streaming through the CLI (issue 7): on the tiny MoE presets, greedy
# ids over 64 tokens (`mica run --ids --temp 0`) and every logit of a 64-token
# prompt (`mica logits`) are byte-identical with an unlimited budget, a
# budget holding half the experts, and a budget holding only the resident
# part plus one layer's experts. Budgets are computed here from the GGUF
# tensor table (numpy-free Python reading the header), not by mica.
# Also: `mica info --mem-budget` prints the plan and the predicted speed, a
# budget below the resident part is one clear error stating the minimum,
# --stats reports on stderr; the usage statistics beside the model pin a hot
# set without changing the ids, and a corrupt one is ignored with one note.
set -u
B=${MICA_BUILD:-build}
T="$B/test-tmp/stream"; mkdir -p "$T"
PY=/usr/bin/python3
pass=0 fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }

# layout FILE -> "dense experts n_total n_per_layer slot" (slot: O_DIRECT-aligned expert, 4 KiB blocks)
layout() {
    "$PY" - "$1" <<'EOF'
import re, struct, sys
d = open(sys.argv[1], 'rb').read()
off = 8
nt, nkv = struct.unpack_from('<QQ', d, off); off += 16
def s(o):
    n, = struct.unpack_from('<Q', d, o); return d[o + 8:o + 8 + n].decode('utf-8', 'replace'), o + 8 + n
fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def skip(t, o):
    if t == 8: return s(o)[1]
    if t == 9:
        et, n = struct.unpack_from('<IQ', d, o); o += 12
        if et in fixed: return o + fixed[et] * n
        for _ in range(n): o = skip(et, o)
        return o
    return o + fixed[t]
align = 32
for _ in range(nkv):
    k, off = s(off); t, = struct.unpack_from('<I', d, off); off += 4
    if k == 'general.alignment': align, = struct.unpack_from('<I', d, off)
    off = skip(t, off)
# block sizes / bytes per block of the types the generator writes
bs = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34), 2: (32, 18), 12: (256, 144), 14: (256, 210)}
tensors = []
for _ in range(nt):
    name, off = s(off); nd, = struct.unpack_from('<I', d, off); off += 4
    ne = struct.unpack_from('<%dQ' % nd, d, off); off += 8 * nd
    t, o = struct.unpack_from('<IQ', d, off); off += 12
    n = 1
    for x in ne: n *= x
    blk, by = bs[t]
    tensors.append((name, ne, n // blk * by))
dense = experts = total = 0; per_layer = {}
for name, ne, nb in tensors:
    m = re.fullmatch(r'blk\.(\d+)\.ffn_(gate|up|down)_exps\.weight', name)
    if m:
        experts += nb
        L = per_layer.setdefault(int(m.group(1)), [ne[2], 0])
        per = nb // ne[2]
        L[1] += -(-(per + 4095) // 4096) * 4096   # aligned superset of one expert's part
    else:
        dense += nb
n_total = sum(v[0] for v in per_layer.values())
n_per = max(v[0] for v in per_layer.values())
slot = max(v[1] for v in per_layer.values())
print(dense, experts, n_total, n_per, slot)
EOF
}

IDS=$("$PY" -c "import random; random.seed(7); print(' '.join(str(random.randrange(3, 600)) for _ in range(64)))")
for spec in tiny-qwen3moe:Q8_0 tiny-olmoe:Q4_0 tiny-mixtral:Q8_0 tiny-deepseek3:Q8_0 tiny-mimo2:Q8_0; do
    preset=${spec%%:*} type=${spec##*:}
    M="$T/$preset.gguf"
    if ! "$B/mica-gen" --preset "$preset" --type "$type" --seed 9 -o "$M" 2>"$T/gen.err"; then
        bad "gen $preset" "$(head -c 300 "$T/gen.err")"; continue
    fi
    read -r dense experts n_total n_per slot <<<"$(layout "$M")"
    half=$((dense + n_total / 2 * slot))
    onelayer=$((dense + n_per * slot))
    "$B/mica" logits -m "$M" --ids "$IDS" -o "$T/$preset.ref.bin" --mem-budget unlimited -t 2 2>"$T/err" || bad "$preset logits unlimited" "$(cat "$T/err")"
    "$B/mica" run -m "$M" --ids-in "1 2 3" -n 64 --temp 0 --ids --mem-budget unlimited -t 2 >"$T/$preset.ref.ids" 2>"$T/err" || bad "$preset run unlimited" "$(cat "$T/err")"
    for budget in $half $onelayer; do
        if ! "$B/mica" info "$M" --mem-budget "$budget" >"$T/info.out" 2>"$T/err"; then
            bad "$preset info $budget" "$(cat "$T/err")"; continue
        fi
        if [ "$budget" -lt "$((dense + experts))" ] && ! grep -q "^plan: *stream the routed experts" "$T/info.out"; then
            bad "$preset plan $budget" "$(grep plan "$T/info.out")"
        fi
        "$B/mica" logits -m "$M" --ids "$IDS" -o "$T/$preset.$budget.bin" --mem-budget "$budget" -t 2 2>"$T/err" \
            || bad "$preset logits $budget" "$(cat "$T/err")"
        if cmp -s "$T/$preset.ref.bin" "$T/$preset.$budget.bin"; then ok "$preset logits identical at budget $budget"
        else bad "$preset logits $budget" "differ from the unlimited budget"; fi
        "$B/mica" run -m "$M" --ids-in "1 2 3" -n 64 --temp 0 --ids --mem-budget "$budget" --stats -t 2 \
            >"$T/$preset.$budget.ids" 2>"$T/stats.err" || bad "$preset run $budget" "$(tail -c 300 "$T/stats.err")"
        # 64 tokens unless the model generated its end-of-generation token first (then both stop there)
        if cmp -s "$T/$preset.ref.ids" "$T/$preset.$budget.ids" && [ "$(wc -w <"$T/$preset.ref.ids")" -ge 8 ]; then
            ok "$preset greedy ids identical at budget $budget"
        else
            bad "$preset ids $budget" "$(head -c 200 "$T/$preset.$budget.ids") vs $(head -c 200 "$T/$preset.ref.ids")"
        fi
        n_ids=$(wc -w <"$T/$preset.$budget.ids")
        if grep -q "^generation: [0-9]* tokens | experts [0-9]* looked up, hit rate [0-9.]*% (cached [0-9.]*%, prefetched [0-9.]*%) | read .* GB/s | I/O stall .* ms | prefetch [0-9]*/[0-9]* used | cache [0-9]*/[0-9]* slots" "$T/stats.err" \
            && grep -q "^prompt: 3 tokens | experts" "$T/stats.err" \
            && [ "$(grep -c '^token [0-9]*: 1 tokens | experts' "$T/stats.err")" -ge $((n_ids - 2)) ]; then
            ok "$preset --stats at budget $budget"
        else
            bad "$preset --stats $budget" "$(tail -c 300 "$T/stats.err")"
        fi
    done
done

# a budget below the resident part: one error line stating the minimum in bytes
M="$T/tiny-qwen3moe.gguf"
read -r dense experts n_total n_per slot <<<"$(layout "$M")"
min=$((dense + 4 * slot)) # expert_used_count 4
if "$B/mica" run -m "$M" --ids-in "1 2" -n 2 --mem-budget 64K >"$T/out" 2>"$T/err"; then
    bad "budget too small" "exit status 0"
elif [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^mica: error: .*minimum budget is .* ($min bytes)" "$T/err"; then
    ok "budget below the minimum is one clear error"
else
    bad "budget too small" "$(cat "$T/err")"
fi
if "$B/mica" run -m "$M" --ids-in "1 2" -n 2 --mem-budget $min --temp 0 >"$T/out" 2>"$T/err"; then
    ok "the minimum budget itself runs"
else
    bad "minimum budget" "$(cat "$T/err")"
fi
if "$B/mica" run -m "$M" --ids-in "1" --mem-budget 4X >"$T/out" 2>"$T/err"; then bad "bad size" "accepted 4X"
elif grep -q "^mica: error: --mem-budget: '4X' is not a size" "$T/err"; then ok "bad size rejected"
else bad "bad size" "$(cat "$T/err")"; fi

# the hot set (usage statistics beside the model) and the predicted speed
M="$T/tiny-qwen3moe.gguf"
read -r dense experts n_total n_per slot <<<"$(layout "$M")"
rm -f "$M.usage"
nearly=$((dense + (n_total - 2) * slot)) # room for pinned experts beside 2 x 4 free slots
"$B/mica" run -m "$M" --ids-in "1 2 3" -n 64 --temp 0 --ids --mem-budget unlimited -t 2 >"$T/hot.ref" 2>/dev/null
"$B/mica" run -m "$M" --ids-in "1 2 3" -n 64 --temp 0 --ids --mem-budget "$nearly" -t 2 >"$T/hot.1" 2>"$T/err" \
    || bad "hot run 1" "$(cat "$T/err")"
if [ -s "$M.usage" ]; then ok "usage statistics written beside the model"; else bad "usage file" "no $M.usage"; fi
"$B/mica" info "$M" --mem-budget "$nearly" >"$T/info.out" 2>"$T/err"
npin=$(sed -nE 's/^hot set: *([0-9]+) experts pinned.*/\1/p' "$T/info.out")
if [ "${npin:-0}" -gt 0 ] && [ "$npin" -le $(((n_total - 2) / 2)) ]; then ok "info: $npin experts pinned from the statistics"
else bad "hot set" "$(grep -A1 'hot set' "$T/info.out")"; fi
if grep -qE "^predicted: +[0-9.]+ tokens/s = 1 / \([0-9.]+ GB / [0-9.]+ GB/s \+ [0-9.]+ GB / [0-9.]+ GB/s\)" "$T/info.out" \
    && grep -q "^expected hits: .*usage statistics" "$T/info.out" && grep -q "^disk read: .* GB/s" "$T/info.out"; then
    ok "info --mem-budget predicts tokens/s and says how"
else
    bad "predicted speed" "$(tail -n 6 "$T/info.out")"
fi
"$B/mica" run -m "$M" --ids-in "1 2 3" -n 64 --temp 0 --ids --mem-budget "$nearly" -t 2 >"$T/hot.2" 2>"$T/err" \
    || bad "hot run 2" "$(cat "$T/err")"
if cmp -s "$T/hot.ref" "$T/hot.1" && cmp -s "$T/hot.ref" "$T/hot.2"; then ok "greedy ids identical with a pinned hot set"
else bad "hot ids" "$(cat "$T/hot.2") vs $(cat "$T/hot.ref")"; fi
printf 'MICAUSE1 but not really' >"$M.usage"
"$B/mica" run -m "$M" --ids-in "1 2 3" -n 64 --temp 0 --ids --mem-budget "$nearly" -t 2 >"$T/hot.3" 2>"$T/err"
if [ $? -eq 0 ] && cmp -s "$T/hot.ref" "$T/hot.3" && [ "$(grep -c 'usage statistics .* ignored: truncated' "$T/err")" -eq 1 ]; then
    ok "a corrupt usage file is ignored with one note"
else
    bad "corrupt usage" "$(cat "$T/err")"
fi

echo "stream: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
