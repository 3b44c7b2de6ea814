// logits.mjs - llama.cpp (through the npm package node-llama-cpp, CPU only)
// as an independent oracle for mica's forward pass.
//
//   node logits.mjs -m MODEL --ids "1 2 3" -o OUT.f32     teacher-forced logits
//   node logits.mjs -m MODEL --ids-in "1 2 3" -n 32       greedy ids (one line)
//   node logits.mjs --jobs JOBS.json                      many jobs, one process
//   common options: -t THREADS (default 1)
//
// Logits: raw little-endian float32, n_tokens x n_vocab, row i = llama.cpp's
// logits after token i (the same layout as `mica logits -o`).
// Greedy: the next N ids under temperature 0, stopping after an end-of-
// generation token (the EOG token itself is printed, as mica does).
//
// JOBS.json: {"threads": 1, "jobs": [
//     {"model": PATH, "kind": "logits", "ids": [..], "out": PATH},
//     {"model": PATH, "kind": "greedy", "prompts": [[..], ..], "n": 32,
//      "tie": REL, "out": PATH}, ...]}
// prints one JSON line per job as it finishes: {"job": i, "ok": true, ...} or
// {"job": i, "ok": false, "error": "..."}; every ok result has "n_vocab" and
// "eog" (the ids llama.cpp treats as end of generation). Jobs on the same
// model share one loaded model. Before loading a model it prints
// {"load": PATH}, before each job {"begin": i}, written synchronously, so that
// the caller can tell which model a native abort (GGML_ASSERT) came from.
// Exit status 1 if any job failed.
//
// A greedy job with several prompts is a deterministic prompt search, so that
// the check does not hinge on a near-tie: candidates are tried in order, a
// candidate whose continuation contains an EOG id is passed over, and the
// first whose every top-1/top-2 gap is >= tie * scale is taken (scale =
// max|logit| of the first candidate's run), otherwise the one with the
// largest smallest gap. Gaps come from the teacher-forced logits of
// prompt + continuation, which are written to "out" for the chosen one. The
// result has "prompt_index", "ids", "min_gap", "scale", "target" and
// "tf_mismatch" (steps where the incremental greedy choice is not the
// teacher-forced argmax; expected 0 except at exact ties).
//
// Context set-up (what the comparison relies on): one sequence, a context and
// a batch large enough for every token of the job, so a teacher-forced run is
// one llama_decode of all ids with every output requested; flash attention
// off; the KV cache in F32 (mica keeps K and V in float32, while llama.cpp's
// default would round them to F16); no sampling options, so the sampler chain
// is only the greedy sampler, which does not alter the logits it reports.
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { readFileSync, writeFileSync, writeSync } from "node:fs";

function usage(msg) {
    if (msg) console.error(`logits.mjs: error: ${msg}`);
    console.error("usage: node logits.mjs -m MODEL (--ids IDS -o OUT | --ids-in IDS -n N) [-t THREADS]\n" +
        "       node logits.mjs --jobs JOBS.json [-t THREADS]");
    process.exit(2);
}

function parseIds(s, what) {
    const parts = String(s).trim().split(/[\s,]+/).filter((x) => x.length > 0);
    if (parts.length === 0) usage(`${what}: no ids`);
    return parts.map((p) => {
        if (!/^[0-9]+$/.test(p)) usage(`${what}: '${p}' is not a token id`);
        return Number(p);
    });
}

function parseArgs(argv) {
    const o = { threads: 1, jobs: null, model: null, ids: null, idsIn: null, n: 32, out: null };
    const val = (i, a) => {
        if (argv[i + 1] === undefined) usage(`${a} needs a value`);
        return argv[i + 1];
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === "-h" || a === "--help") usage();
        else if (a === "--jobs") o.jobs = val(i++, a);
        else if (a === "-m" || a === "--model") o.model = val(i++, a);
        else if (a === "--ids") o.ids = parseIds(val(i++, a), a);
        else if (a === "--ids-in") o.idsIn = parseIds(val(i++, a), a);
        else if (a === "-o") o.out = val(i++, a);
        else if (a === "-n" || a === "-t") {
            const v = val(i++, a);
            if (!/^[0-9]+$/.test(v) || Number(v) < 1) usage(`${a}: '${v}' is not an integer >= 1`);
            if (a === "-n") o.n = Number(v); else o.threads = Number(v);
        } else usage(`unknown option '${a}'`);
    }
    if (o.jobs !== null) {
        const spec = JSON.parse(readFileSync(o.jobs, "utf8"));
        if (spec.threads) o.threads = spec.threads;
        return { threads: o.threads, jobs: spec.jobs, single: false };
    }
    if (o.model === null) usage("-m MODEL is required");
    if ((o.ids === null) === (o.idsIn === null)) usage("give exactly one of --ids and --ids-in");
    if (o.ids !== null && o.out === null) usage("--ids needs -o OUT");
    const job = o.ids !== null
        ? { model: o.model, kind: "logits", ids: o.ids, out: o.out }
        : { model: o.model, kind: "greedy", prompts: [o.idsIn], n: o.n, tie: 0 };
    return { threads: o.threads, jobs: [job], single: true };
}

function nVocabOf(model) {
    const n = model.tokens?.nTokens ?? model.tokens?.vocabularySize;
    if (typeof n === "number" && n > 0) return n;
    const md = model.fileInfo.metadata;
    const toks = md.tokenizer?.ggml?.tokens;
    if (Array.isArray(toks) && toks.length > 0) return toks.length;
    const v = md[md.general.architecture]?.vocab_size;
    if (typeof v === "number" && v > 0) return v;
    throw new Error("cannot find the vocabulary size");
}

// Teacher-forced logits of every position, as n_tokens x n_vocab float32.
async function logitsJob(seq, ids, nVocab) {
    await seq.clearHistory();
    const input = ids.map((t) => [t, { generateNext: { logits: true } }]);
    const res = await seq.controlledEvaluate(input);
    const out = new Float32Array(ids.length * nVocab);
    for (let i = 0; i < ids.length; i++) {
        const m = res[i]?.next?.logits;
        if (!(m instanceof Map)) throw new Error(`no logits returned for position ${i}`);
        if (m.size !== nVocab) throw new Error(`position ${i}: ${m.size} logits, expected ${nVocab}`);
        const row = out.subarray(i * nVocab, (i + 1) * nVocab);
        row.fill(Number.NaN);
        for (const [tok, v] of m) {
            if (!(tok >= 0 && tok < nVocab)) throw new Error(`position ${i}: token id ${tok} out of range`);
            row[tok] = v;
        }
        for (let k = 0; k < nVocab; k++)
            if (Number.isNaN(row[k])) throw new Error(`position ${i}: no logit for token ${k}`);
    }
    return out;
}

// Greedy continuation of a prompt, n ids at most, ending after an EOG id.
async function greedyJob(seq, model, prompt, n) {
    await seq.clearHistory();
    const got = [];
    const it = seq.evaluate(prompt, { temperature: 0, yieldEogToken: true });
    try {
        let r = await it.next();
        while (!r.done && got.length < n) {
            const t = r.value;
            got.push(t);
            if (model.isEogToken(t) || got.length >= n) break;
            r = await it.next();
        }
    } finally {
        await it.return();
    }
    return got;
}

function top2Gap(row) {
    let a = -Infinity, b = -Infinity;
    for (const v of row) {
        if (v > a) { b = a; a = v; } else if (v > b) b = v;
    }
    return a - b;
}

function argmax(row) {
    let k = 0;
    for (let i = 1; i < row.length; i++) if (row[i] > row[k]) k = i;
    return k;
}

// The prompt search described at the top; returns the chosen candidate.
async function greedySearchJob(seq, model, j, nVocab) {
    let best = null, target = null;
    for (let c = 0; c < j.prompts.length; c++) {
        const prompt = j.prompts[c];
        const ids = await greedyJob(seq, model, prompt, j.n);
        const all = prompt.concat(ids);
        const lg = await logitsJob(seq, all, nVocab);
        let scale = 0;
        for (const v of lg) scale = Math.max(scale, Math.abs(v));
        if (target === null) target = (j.tie ?? 0) * scale;
        let minGap = Infinity, tfMismatch = 0;
        for (let k = 0; k < ids.length; k++) {
            const row = lg.subarray((prompt.length - 1 + k) * nVocab, (prompt.length + k) * nVocab);
            minGap = Math.min(minGap, top2Gap(row));
            if (argmax(row) !== ids[k]) tfMismatch++;
        }
        const cand = { prompt_index: c, ids, min_gap: minGap, scale, target, tf_mismatch: tfMismatch, lg };
        const hitsEog = ids.some((t) => model.isEogToken(t));
        if (c === 0 && j.prompts.length === 1) return cand;
        if (hitsEog) {
            if (best === null && c === j.prompts.length - 1) return cand; // every candidate ended early
            continue;
        }
        if (best === null || minGap > best.min_gap) best = cand;
        if (minGap >= target) break;
    }
    return best;
}

async function main() {
    const { threads, jobs, single } = parseArgs(process.argv.slice(2));
    const llama = await getLlama({
        gpu: false, build: "never", maxThreads: threads, logLevel: LlamaLogLevel.error,
        logger: (level, message) => {
            if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) process.stderr.write(message);
        },
    });
    let failed = 0;
    const byModel = new Map();
    jobs.forEach((j, i) => {
        if (!byModel.has(j.model)) byModel.set(j.model, []);
        byModel.get(j.model).push(i);
    });
    const results = new Array(jobs.length);
    const emit = (o) => { if (!single) writeSync(1, JSON.stringify(o) + "\n"); };
    for (const [path, idx] of byModel) {
        let model = null, ctx = null;
        emit({ load: path });
        try {
            model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
            const nVocab = nVocabOf(model);
            const need = Math.max(...idx.map((i) => jobs[i].kind === "greedy"
                ? Math.max(...jobs[i].prompts.map((p) => p.length)) + jobs[i].n + 1
                : jobs[i].ids.length));
            const eog = [];
            for (let t = 0; t < nVocab; t++) if (model.isEogToken(t)) eog.push(t);
            ctx = await model.createContext({
                contextSize: need,
                batchSize: need,
                sequences: 1,
                threads: { ideal: threads, min: threads },
                flashAttention: false,
                experimentalKvCacheKeyType: "F32",
                experimentalKvCacheValueType: "F32",
            });
            const seq = ctx.getSequence();
            for (const i of idx) {
                const j = jobs[i];
                emit({ begin: i });
                const t0 = performance.now();
                try {
                    for (const t of (j.kind === "greedy" ? j.prompts.flat() : j.ids))
                        if (!(Number.isInteger(t) && t >= 0 && t < nVocab)) throw new Error(`token id ${t} out of range`);
                    if (j.kind === "logits") {
                        const lg = await logitsJob(seq, j.ids, nVocab);
                        writeFileSync(j.out, Buffer.from(lg.buffer, lg.byteOffset, lg.byteLength));
                        results[i] = { job: i, ok: true, n_vocab: nVocab, eog };
                    } else if (j.kind === "greedy") {
                        const { lg, ...r } = await greedySearchJob(seq, model, j, nVocab);
                        if (j.out) writeFileSync(j.out, Buffer.from(lg.buffer, lg.byteOffset, lg.byteLength));
                        results[i] = { job: i, ok: true, n_vocab: nVocab, eog, ...r };
                    } else {
                        throw new Error(`unknown job kind '${j.kind}'`);
                    }
                    results[i].ms = Math.round(performance.now() - t0);
                } catch (e) {
                    results[i] = { job: i, ok: false, error: String(e?.message ?? e) };
                }
                emit(results[i]);
            }
        } catch (e) {
            for (const i of idx) {
                if (!results[i]) {
                    results[i] = { job: i, ok: false, error: `${path}: ${e?.message ?? e}` };
                    emit(results[i]);
                }
            }
        } finally {
            if (ctx) await ctx.dispose();
            if (model) await model.dispose();
        }
    }
    for (const r of results) {
        if (!r.ok) failed++;
        if (single) {
            if (!r.ok) console.error(`logits.mjs: error: ${r.error}`);
            else if (r.ids) console.log(r.ids.join(" "));
        }
    }
    await llama.dispose();
    process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
    console.error(`logits.mjs: error: ${e?.message ?? e}`);
    process.exit(1);
});
