// tok_llamacpp.mjs - llama.cpp's tokenizer encode throughput (MB/s of UTF-8
// input) through the npm package node-llama-cpp (prebuilt CPU binaries), the
// counterpart of bench/bench_tok.c.
//
//   node bench/tok_llamacpp.mjs VOCAB.gguf TEXT [RUNS]
//
// Loads the vocabulary-only GGUF (vocabOnly: true), reads TEXT as UTF-8 and
// times model.tokenize(text) on the whole text in one call (special-token
// text not parsed, no BOS/EOS added: llama_tokenize with add_special and
// parse_special off), one untimed warm-up run, then RUNS timed runs
// (default 5). Wall time around the call, so it includes node-llama-cpp's
// conversion of the JavaScript string to UTF-8 and of the ids to an array.
// Prints the same line as bench_tok run: bytes, tokens, FNV-1a hash of the
// ids written as "id," each, and median / min / max MB/s.
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { readFileSync } from "node:fs";

const [vocabPath, textPath, runsArg] = process.argv.slice(2);
if (!vocabPath || !textPath) {
    console.error("usage: node tok_llamacpp.mjs VOCAB.gguf TEXT [RUNS]");
    process.exit(2);
}
const runs = Math.max(1, Math.min(64, Number(runsArg ?? 5) | 0));
const text = readFileSync(textPath, "utf8");
const bytes = Buffer.byteLength(text, "utf8");

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, logger: () => {} });
const model = await llama.loadModel({ modelPath: vocabPath, vocabOnly: true });

function fnv(ids) {
    let h = 0xcbf29ce484222325n;
    const p = 0x100000001b3n, mask = (1n << 64n) - 1n;
    for (const id of ids)
        for (const c of `${id},`) h = ((h ^ BigInt(c.charCodeAt(0))) * p) & mask;
    return h.toString(16).padStart(16, "0");
}

const mbs = [];
let ids = [];
for (let r = -1; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    ids = model.tokenize(text, false);
    const t = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r >= 0) mbs.push(bytes / 1e6 / t);
}
mbs.sort((a, b) => a - b);
console.log(`bytes=${bytes} tokens=${ids.length} hash=${fnv(ids)} mb_s_median=${mbs[runs >> 1].toFixed(2)} ` +
    `mb_s_min=${mbs[0].toFixed(2)} mb_s_max=${mbs[runs - 1].toFixed(2)} runs=${runs}`);
await model.dispose();
await llama.dispose();
