// llamacpp_bench.mjs - llama.cpp's prompt (pp) and generation (tg) speed on
// GGUF files, measured the way `mica bench` measures mica, through the npm
// package node-llama-cpp (prebuilt CPU binaries, no GPU, no compilation).
//
//   node bench/llamacpp_bench.mjs -m MODEL [-m MODEL ...] [-p 512] [-n 128]
//        [-t THREADS] [-r 3] [-d DEPTH] [--flash-attn off|on|auto]
//
// Prints one JSON object per row on stdout with llama-bench's field names
// (model_filename, n_prompt, n_gen, n_depth, n_threads, avg_ts, stddev_ts,
// samples_ts, samples_ns) plus "engine": "llama.cpp".
//
// Method, identical to cli/cmd_bench.c:
//   pp: clear the sequence, evaluate an untimed prefix of DEPTH ids, then time
//       the evaluation of P ids ending with the last token's logits (one
//       sampled token, as llama-bench computes the last logits).
//   tg: clear, untimed prefix, then time N single-token decodes; each decode
//       computes the logits and samples greedily, and the next input is the
//       next pseudo-random id (not the sampled one).
//   One untimed warm-up run per test, then R timed runs; mean and sample
//   standard deviation of the per-run tokens/s.
//   Ids: the same splitmix64 stream (seed "mica") as mica bench, mod n_vocab.
// Two timings per run: wall time around the awaited calls (avg_ts; it
// includes node-llama-cpp's JavaScript and worker-thread overhead per call),
// and llama.cpp's own decode timer read from llama_perf_context_print
// (internal_avg_ts; "prompt eval time" for pp, "eval time" for tg), which is
// what llama-bench itself would measure more closely.
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { readFileSync } from "node:fs";

function usage(msg) {
    if (msg) console.error(`llamacpp_bench: error: ${msg}`);
    console.error("usage: node llamacpp_bench.mjs -m MODEL [-m MODEL ...] [-p N] [-n N] [-t N] [-r N] [-d N] [--flash-attn off|on|auto]");
    process.exit(msg ? 1 : 0);
}

function parseArgs(argv) {
    const o = { models: [], p: 512, n: 128, t: 0, r: 3, d: 0, fa: "off" };
    const int = (name, v, lo) => {
        if (v === undefined || !/^[0-9]+$/.test(v) || Number(v) < lo) usage(`${name}: '${v}' is not an integer >= ${lo}`);
        return Number(v);
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === "-h" || a === "--help") usage();
        else if (a === "-m" || a === "--model") { if (argv[i + 1] === undefined) usage("-m needs a value"); o.models.push(argv[++i]); }
        else if (a === "-p" || a === "--n-prompt") o.p = int(a, argv[++i], 0);
        else if (a === "-n" || a === "--n-gen") o.n = int(a, argv[++i], 0);
        else if (a === "-t" || a === "--threads") o.t = int(a, argv[++i], 1);
        else if (a === "-r" || a === "--repetitions") o.r = int(a, argv[++i], 1);
        else if (a === "-d" || a === "--depth") o.d = int(a, argv[++i], 0);
        else if (a === "--flash-attn") {
            o.fa = argv[++i];
            if (!["off", "on", "auto"].includes(o.fa)) usage(`--flash-attn: '${o.fa}' is not off, on or auto`);
        } else usage(`unknown option '${a}'`);
    }
    if (o.models.length === 0) usage("-m MODEL is required");
    if (o.p === 0 && o.n === 0) usage("-p 0 and -n 0 leave nothing to measure");
    return o;
}

// splitmix64 ids below nVocab; the same stream as bench_ids() in cli/cmd_bench.c.
function benchIds(n, nVocab, seed) {
    const M = (1n << 64n) - 1n;
    let x = BigInt(seed);
    const ids = new Array(n);
    for (let i = 0; i < n; i++) {
        x = (x + 0x9e3779b97f4a7c15n) & M;
        let z = x;
        z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
        z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
        z ^= z >> 31n;
        ids[i] = Number(z % BigInt(nVocab));
    }
    return ids;
}

const mean = (x) => x.reduce((a, b) => a + b, 0) / x.length;
const sd = (x) => {
    if (x.length < 2) return 0;
    const m = mean(x);
    return Math.sqrt(x.reduce((a, b) => a + (b - m) * (b - m), 0) / (x.length - 1));
};

function nVocabOf(model) {
    const md = model.fileInfo.metadata;
    const arch = md.general.architecture;
    const fromArch = md[arch]?.vocab_size;
    if (typeof fromArch === "number" && fromArch > 0) return fromArch;
    const toks = md.tokenizer?.ggml?.tokens;
    if (Array.isArray(toks) && toks.length > 0) return toks.length;
    throw new Error("cannot find the vocabulary size in the GGUF metadata");
}

// llama.cpp's perf lines arrive through the logger, asynchronously.
const perfLines = [];
function logger(level, message) {
    if (message.includes("llama_perf_context_print")) perfLines.push(message);
    else if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) process.stderr.write(message);
}

// Prints (and resets) llama.cpp's context timings; returns {ms, n} of the
// "prompt eval time" (pp) or "eval time" (tg) line.
async function readPerf(ctx, isGen) {
    perfLines.length = 0;
    await ctx.printTimings();
    for (let k = 0; k < 200 && !perfLines.join("").includes("total time"); k++)
        await new Promise((r) => setTimeout(r, 5));
    const text = perfLines.join("");
    const re = isGen ? /[^t] eval time =\s*([0-9.]+) ms \/\s*([0-9]+) runs/ : /prompt eval time =\s*([0-9.]+) ms \/\s*([0-9]+) tokens/;
    const m = re.exec(text);
    return m ? { ms: Number(m[1]), n: Number(m[2]) } : null;
}

// One run; returns {dt: wall seconds, internal: seconds by llama.cpp's timer or null}.
async function runOnce(ctx, seq, test, o, ids) {
    await seq.clearHistory();
    if (o.d > 0) await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, o.d));
    await readPerf(ctx, test.isGen); // reset the counters after the prefix
    const t = ids.slice(o.d);
    let dt;
    if (!test.isGen) {
        const it = seq.evaluate(t.slice(0, o.p), { temperature: 0, yieldEogToken: true });
        const t0 = process.hrtime.bigint();
        await it.next();
        dt = Number(process.hrtime.bigint() - t0) / 1e9;
        await it.return();
    } else {
        const it = seq.evaluate([t[0]], { temperature: 0, yieldEogToken: true });
        const t0 = process.hrtime.bigint();
        await it.next();
        for (let i = 1; i < o.n; i++) await it.next(t[i]);
        dt = Number(process.hrtime.bigint() - t0) / 1e9;
        await it.return();
    }
    const perf = await readPerf(ctx, test.isGen);
    const want = test.isGen ? o.n : o.p;
    const internal = perf && perf.n === want && perf.ms > 0 ? perf.ms / 1e3 : null;
    return { dt, internal };
}

async function main() {
    const o = parseArgs(process.argv.slice(2));
    const pkg = JSON.parse(readFileSync(new URL("./node_modules/node-llama-cpp/package.json", import.meta.url)));
    let llamaRelease = "unknown";
    try {
        llamaRelease = JSON.parse(readFileSync(new URL("./node_modules/node-llama-cpp/llama/binariesGithubRelease.json", import.meta.url))).release;
    } catch { /* version stays unknown */ }
    const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.info, logger, maxThreads: o.t || undefined });
    const threads = o.t || llama.cpuMathCores;
    for (const path of o.models) {
        const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
        const nVocab = nVocabOf(model);
        // +1: the pp test ends by sampling one token, which must still fit; a context of
        // exactly d + p makes node-llama-cpp shift the context (erase and re-evaluate half
        // of it) inside the timed call, which once halved llama.cpp's measured pp speed.
        const nCtx = o.d + Math.max(o.p, o.n) + 1;
        const ctx = await model.createContext({
            contextSize: nCtx,
            batchSize: Math.max(1, Math.min(512, nCtx)),
            threads: { ideal: threads, min: threads },
            sequences: 1,
            flashAttention: o.fa === "auto" ? "auto" : o.fa === "on",
            performanceTracking: true,
        });
        const seq = ctx.getSequence();
        const ids = benchIds(nCtx, nVocab, 0x6d696361);
        for (const test of [{ isGen: false }, { isGen: true }]) {
            const nTok = test.isGen ? o.n : o.p;
            if (nTok === 0) continue;
            await runOnce(ctx, seq, test, o, ids); // warm-up
            const ns = [], ts = [], its = [];
            for (let k = 0; k < o.r; k++) {
                const { dt, internal } = await runOnce(ctx, seq, test, o, ids);
                ns.push(Math.round(dt * 1e9));
                ts.push(nTok / dt);
                if (internal !== null) its.push(nTok / internal);
            }
            const name = (test.isGen ? `tg${o.n}` : `pp${o.p}`) + (o.d > 0 ? ` @ d${o.d}` : "");
            console.log(JSON.stringify({
                engine: "llama.cpp",
                build_commit: `node-llama-cpp ${pkg.version}, llama.cpp ${llamaRelease}`,
                model_filename: path,
                model_size: model.size,
                n_batch: ctx.batchSize,
                n_threads: ctx.currentThreads ?? threads,
                flash_attn: ctx.flashAttention,
                type_k: "f16",
                type_v: "f16",
                n_prompt: test.isGen ? 0 : o.p,
                n_gen: test.isGen ? o.n : 0,
                n_depth: o.d,
                test: name,
                avg_ns: Math.round(mean(ns)),
                stddev_ns: Math.round(sd(ns)),
                avg_ts: mean(ts),
                stddev_ts: sd(ts),
                samples_ns: ns,
                samples_ts: ts,
                internal_avg_ts: its.length === o.r ? mean(its) : null,
                internal_stddev_ts: its.length === o.r ? sd(its) : null,
                internal_samples_ts: its.length === o.r ? its : null,
            }));
        }
        await ctx.dispose();
        await model.dispose();
    }
    await llama.dispose();
}

main().catch((e) => {
    console.error(`llamacpp_bench: error: ${e?.message ?? e}`);
    process.exit(1);
});
