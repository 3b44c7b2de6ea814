// server_load.mjs - load on an OpenAI-compatible server: C clients at once,
// each sending R streamed chat requests one after another, and what each
// request and the whole run saw.
//
//   node bench/server_load.mjs --url http://127.0.0.1:8080 [-c 4] [-r 4]
//        [-n 64] [--prompt-words 64] [--key KEY]
//
// Each request asks for n tokens (max_tokens n, temperature 0; the
// random-weight test models almost never end early) with a prompt of
// prompt-words distinct words, so every client does the same work. Client i
// uses a prompt of its own (no shared prefix across clients).
// Prints one JSON object: clients, requests, failures, wall_s, gen_tokens,
// agg_gen_ts (generated tokens over wall time, all clients), ttft_ms and
// latency_ms as {p50, p95, max}, per_request_ts {p50} (tokens/s seen by one
// client after its first token). Uses only node's built-in fetch.

function usage(msg) {
    if (msg) console.error(`server_load: ${msg}`);
    console.error("usage: node bench/server_load.mjs --url URL [-c CLIENTS] [-r REQUESTS] [-n TOKENS] [--prompt-words W] [--key KEY]");
    process.exit(2);
}

const opt = { url: "", c: 4, r: 4, n: 64, words: 64, key: "" };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    const num = () => { const x = Number(v); if (!Number.isInteger(x) || x < 1) usage(`bad ${a}`); i++; return x; };
    if (a === "--url") { opt.url = v; i++; }
    else if (a === "-c") opt.c = num();
    else if (a === "-r") opt.r = num();
    else if (a === "-n") opt.n = num();
    else if (a === "--prompt-words") opt.words = num();
    else if (a === "--key") { opt.key = v; i++; }
    else usage(`unknown option ${a}`);
}
if (!opt.url) usage("--url is required");

const WORDS = ["river", "stone", "lamp", "cloud", "garden", "letter", "window", "harbor", "violin", "meadow",
    "copper", "lantern", "orchard", "ribbon", "thunder", "valley", "whistle", "marble", "feather", "compass"];

function prompt(client, req) {
    const w = [];
    let x = (client + 1) * 7919 + req * 104729;
    for (let k = 0; k < opt.words; k++) {
        x = (x * 1103515245 + 12345) % 2147483648;
        w.push(WORDS[x % WORDS.length]);
    }
    return `Client ${client} request ${req}: ${w.join(" ")}`;
}

async function one(client, req) {
    const t0 = performance.now();
    const headers = { "content-type": "application/json" };
    if (opt.key) headers.authorization = `Bearer ${opt.key}`;
    const res = await fetch(`${opt.url}/v1/chat/completions`, {
        method: "POST",
        headers,
        body: JSON.stringify({
            model: MODEL,
            messages: [{ role: "user", content: prompt(client, req) }],
            max_tokens: opt.n, temperature: 0, stream: true,
            stream_options: { include_usage: true },
        }),
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
    let ttft = -1, tokens = 0, buf = "";
    const dec = new TextDecoder();
    for await (const part of res.body) {
        buf += dec.decode(part, { stream: true });
        let k;
        while ((k = buf.indexOf("\n\n")) >= 0) {
            const ev = buf.slice(0, k);
            buf = buf.slice(k + 2);
            if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
            const j = JSON.parse(ev.slice(6));
            const d = j.choices && j.choices[0] && j.choices[0].delta;
            if (ttft < 0 && d && (d.content || d.reasoning_content)) ttft = performance.now() - t0;
            if (j.usage) tokens = j.usage.completion_tokens;
        }
    }
    const total = performance.now() - t0;
    return { ttft, total, tokens };
}

function pct(xs, p) {
    if (xs.length === 0) return null;
    const s = [...xs].sort((a, b) => a - b);
    return Math.round(s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))] * 10) / 10;
}

const mh = opt.key ? { authorization: `Bearer ${opt.key}` } : {};
const MODEL = (await (await fetch(`${opt.url}/v1/models`, { headers: mh })).json()).data[0].id;
const results = [];
let failures = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: opt.c }, async (_, client) => {
    for (let req = 0; req < opt.r; req++) {
        try { results.push(await one(client, req)); }
        catch (e) { failures++; console.error(`server_load: client ${client} request ${req}: ${e.message}`); }
    }
}));
const wall = (performance.now() - t0) / 1000;
const gen = results.reduce((a, r) => a + r.tokens, 0);
const ttft = results.filter((r) => r.ttft >= 0).map((r) => r.ttft);
const lat = results.map((r) => r.total);
const perReq = results.filter((r) => r.ttft >= 0 && r.tokens > 1)
    .map((r) => (r.tokens - 1) / ((r.total - r.ttft) / 1000));
console.log(JSON.stringify({
    clients: opt.c, requests: results.length + failures, failures, max_tokens: opt.n,
    wall_s: Math.round(wall * 100) / 100, gen_tokens: gen,
    agg_gen_ts: Math.round((gen / wall) * 100) / 100,
    ttft_ms: { p50: pct(ttft, 0.5), p95: pct(ttft, 0.95), max: pct(ttft, 1) },
    latency_ms: { p50: pct(lat, 0.5), p95: pct(lat, 0.95), max: pct(lat, 1) },
    per_request_ts: { p50: pct(perReq, 0.5) },
}));
