#!/usr/bin/env bash
# Golden tests against outputs made by other programs:
#  - stories260K converted from llama2.c format, greedy 124 tokens after
#    "Once upon a time": stdout byte-identical to llama2.c run.c's output.
set -u
B=${MICA_BUILD:-build}; D=${MICA_TESTDATA:-../shared/testdata}
T="$B/test-tmp/golden"; mkdir -p "$T"
pass=0 fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
need() { # file: missing data is a failure in CI, a skip otherwise
    [ -e "$1" ] && return 0
    if [ "${CI:-}" = true ]; then bad "data" "missing $1"; else echo "skip: missing $1"; fi
    return 1
}

if need "$D/tinystories/stories260K.bin" && need "$D/tinystories/tok512.bin" &&
   need "$D/tinystories/expected_greedy_once_upon_a_time.txt"; then
    if "$B/mica" convert llama2c "$D/tinystories/stories260K.bin" "$D/tinystories/tok512.bin" \
        -o "$T/stories260K.gguf" 2>"$T/convert.err"; then
        ok "convert stories260K"
        for t in 1 2; do
            if "$B/mica" run -m "$T/stories260K.gguf" -p "Once upon a time" -n 124 --temp 0 -t $t \
                >"$T/out.txt" 2>"$T/run.err" &&
               cmp -s "$T/out.txt" "$D/tinystories/expected_greedy_once_upon_a_time.txt"; then
                ok "stories260K greedy output equals llama2.c run.c (threads $t)"
            else
                bad "stories260K greedy (threads $t)" "$(head -c 300 "$T/run.err"; cmp "$T/out.txt" "$D/tinystories/expected_greedy_once_upon_a_time.txt" 2>&1)"
            fi
        done
        # The ids run.c generated for the same prompt (tinystories/README.md).
        want="432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 292 411 322 265 282 295 433 426 385 328 432 358 394 261 370 432 352 266 268 388 426 338 391 266 267 337 335 312 432 398 312 286 267 414 270 333 415 426 13 438 310 439 419 357 336 432 313 438 310 432 278 316 439 419 298 414 267 265 282 295 433 426 436 317 286 296 418 269 279 292 416 439 413 409 416 327 263 415 294 267 400 426 338 336 432 313 442 391 267 337 335 364 420 268 388 432 398 359 280 303 439 413 272 417 264"
        got=$("$B/mica" run -m "$T/stories260K.gguf" --ids-in "1 403 407 261 378" -n 124 --temp 0 --ids 2>/dev/null)
        [ "$got" = "$want" ] && ok "stories260K greedy ids" || bad "stories260K greedy ids" "got '$got'"
        got=$("$B/mica" tokenize -m "$T/stories260K.gguf" -p "Once upon a time" 2>&1)
        [ "$got" = "1 403 407 261 378" ] && ok "stories260K prompt ids" || bad "stories260K prompt ids" "got '$got'"
    else
        bad "convert stories260K" "$(cat "$T/convert.err")"
    fi
fi

echo "golden: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
