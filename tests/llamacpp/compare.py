#!/usr/bin/python3
"""compare.py - checks mica's forward pass against llama.cpp (node-llama-cpp's
prebuilt CPU library, driven by tests/llamacpp/logits.mjs) on the same GGUF files.

For every model of case_list() two checks, each printing one line `ok NAME stats` or
`FAIL NAME why | stats` (or `SKIP NAME why` outside CI):

  logits_NAME   `mica logits --ids` vs llama.cpp's teacher-forced logits:
                rel = max|diff| / max|llama.cpp logit|, top-1 agreement over the
                positions that are not near-ties, mean KL(llama.cpp || mica)
  greedy_NAME   `mica run --ids-in P -n N --temp 0 --ids` vs llama.cpp's greedy
                run. llama.cpp scores mica's own sequence teacher-forced; each
                mica choice must be llama.cpp's argmax or within tie * scale of
                it (then reported as a near-tie divergence, still ok). The
                prompt is searched (in logits.mjs) so that llama.cpp's run has
                no near-tie if one of the candidates allows it.

The last line is `llamacpp: N passed, M failed[, K skipped]`; exit status 1 if
any case failed. Tolerances and the measurements behind them: TOL and MOE_TOL below,
tests/ref/README.md ("tests/llamacpp: llama.cpp as a second oracle").

Environment: MICA_BUILD (default build), MICA_TESTDATA (default
../shared/testdata), MICA_NODE (default node), CI=true turns a missing tool,
preset or data file into a failure instead of a skip.
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
import gguf_ref  # noqa: E402
import moe_ref  # noqa: E402
import deepseek_ref  # noqa: E402
import mimo_ref  # noqa: E402
from oracle_compare import lcg_ids, log_softmax, top2_gap  # noqa: E402

SEED = 1234        # mica-gen weight seed, the numpy oracle's (--seed changes it)
N_TF = 48          # teacher-forced positions
N_GEN = 32         # greedy tokens
N_PROMPT = 6       # greedy prompt length (plus BOS)
N_CANDIDATES = 8   # greedy prompt candidates (the search stops at the first good one)

# Tolerances, per class (tests/ref/README.md, "Tolerances (llama.cpp oracle)"):
#   rel   max |mica - llama.cpp| / max |llama.cpp| on teacher-forced logits
#   tie   a position whose llama.cpp top-1/top-2 gap is <= tie * scale is a
#         near-tie: a top-1 flip there is reported, not counted; a greedy choice
#         within tie * scale of llama.cpp's argmax is accepted
#   top1  minimum top-1 agreement over the decisive (not near-tie) positions
#   kl    maximum mean KL(llama.cpp || mica)
#   router  MoE only: a case that fails is judged again without the positions
#         where some layer's router top-k margin (from the numpy reference,
#         tests/ref/{moe,deepseek,mimo}_ref.py) is <= router, since an error
#         far inside the bounds may pick another expert there; top-1 still
#         covers every position
# Measured (8 weight seeds on the dense presets): F32 rel <= 6.2e-7, KL <=
# 8.2e-13: both engines keep every activation in float32. F16 rel <= 4.3e-4,
# KL <= 4.5e-7 and BF16 rel <= 3.4e-3, KL <= 3.3e-5: llama.cpp rounds the
# activations to the weight's half type before the dot product, mica does not.
# Quantised rel <= 1.1e-2, KL <= 2.9e-4: both quantise activations to
# Q8_0/Q8_K, and the differences are isolated rounding events (an exact prefix
# of positions, then a step). A qwen3 without q/k norm (rel 0.034, KL 4.3e-3
# on Q4_K) fails these bounds.
TOL = {
    "F32":   {"rel": 1e-5, "tie": 2e-5, "top1": 1.0, "kl": 1e-9, "router": 1e-4},
    "F16":   {"rel": 1e-3, "tie": 2e-3, "top1": 1.0, "kl": 1e-5, "router": 5e-3},
    "BF16":  {"rel": 1e-2, "tie": 1e-2, "top1": 1.0, "kl": 1e-4, "router": 3e-2},
    "quant": {"rel": 2e-2, "tie": 2e-2, "top1": 0.97, "kl": 1e-3, "router": 5e-2},
}


# Models with routed experts: an error far inside the bounds above can pick
# another expert at a router near-tie; those positions are left out (router
# margin from the numpy reference), but the changed hidden state also reaches
# later positions through the KV cache (measured: rel up to 1.2e-2 for BF16 and
# 1.6e-2 for quantised weights next to an excluded position), and deepseek2's
# latent attention quantises different activations in the two engines (see
# README). So BF16 and quantised MoE models get the numpy oracle's bounds for
# the tiny presets.
MOE_TOL = {
    "BF16":  {"rel": 2e-2, "tie": 1e-2, "top1": 1.0, "kl": 2e-4, "router": 3e-2},
    "quant": {"rel": 3e-2, "tie": 3e-2, "top1": 0.97, "kl": 2e-3, "router": 5e-2},
}


def tol_of(typ, moe=False):
    cls = typ if typ in TOL else "quant"
    return (MOE_TOL if moe and cls in MOE_TOL else TOL)[cls]


DENSE = [("llama", "tiny-llama"), ("qwen2", "tiny-qwen2"), ("qwen3", "tiny-qwen3")]
# MoE presets: added when `mica-gen --list` knows them (landing in stages).
MOE = [("qwen3moe", "tiny-qwen3moe"), ("olmoe", "tiny-olmoe"), ("mixtral", "tiny-mixtral"),
       ("mimo2", "tiny-mimo2"), ("deepseek2", "tiny-deepseek2"), ("deepseek3", "tiny-deepseek3")]
TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K"]
# The remaining weight types on one dense preset only (keeps the run short);
# llama.cpp's dequantisation is the ground truth for their bit layouts.
EXTRA_TYPES = ["Q5_K", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS", "Q3_K", "Q2_K", "MXFP4"]
EXTRA_PRESET = "tiny-qwen3"


class Missing(Exception):
    """A tool, preset or data file is absent (a skip, or a failure when CI=true)."""


def router_gaps(path, ids, typ):
    """For a file with routed experts: (per-position smallest router margin
    over the MoE layers, from the numpy reference of that architecture, and
    the near-tie threshold in the same units); None for a dense model."""
    g = gguf_ref.GGUFFile(path)
    arch = g.arch()
    is_moe = moe_ref.is_moe_file(g)
    g.close()
    if is_moe:
        m, quant = moe_ref.MoERefModel(path), moe_ref.ROUTER_TIE_QUANT
    elif arch == deepseek_ref.ARCH:
        m, quant = deepseek_ref.DeepSeekRefModel(path), moe_ref.ROUTER_TIE_QUANT
    elif arch == "mimo2":  # sigmoid-score units
        m, quant = mimo_ref.MimoRefModel(path), mimo_ref.ROUTER_TIE_QUANT
    else:
        return None
    _, gaps = m.logits_with_router_gaps(ids)
    return gaps, min(tol_of(typ, True)["router"], quant)


def gguf_with_u32(src, dst, values):
    """Copies GGUF file src to dst with the UINT32 metadata keys in `values`
    (dict key -> int) set: existing keys are replaced, others appended. The
    tensor data moves by a multiple of the alignment (offsets are relative)."""
    g = gguf_ref.GGUFFile(src)
    buf = memoryview(g._mm)
    c = gguf_ref._Cursor(buf)
    c.take(4)
    c.scalar(gguf_ref.T_UINT32)
    n_tensors, n_kv = c.scalar(gguf_ref.T_INT64), c.scalar(gguf_ref.T_INT64)

    def kv_bytes(key, v):
        kb = key.encode()
        return struct.pack("<Q", len(kb)) + kb + struct.pack("<II", gguf_ref.T_UINT32, v)

    kvs, seen = [], set()
    for _ in range(n_kv):
        p0 = c.pos
        key = c.string()
        key = key.decode() if isinstance(key, bytes) else key
        c.value(c.scalar(gguf_ref.T_UINT32))
        seen.add(key)
        kvs.append(kv_bytes(key, values[key]) if key in values else bytes(buf[p0:c.pos]))
    kvs += [kv_bytes(k, v) for k, v in values.items() if k not in seen]
    p0 = c.pos
    for _ in range(n_tensors):
        c.string()
        n_dims = c.scalar(gguf_ref.T_UINT32)
        c.take(8 * n_dims + 4 + 8)
    head = bytes(buf[:16]) + struct.pack("<Q", len(kvs)) + b"".join(kvs) + bytes(buf[p0:c.pos])
    pad = (-len(head)) % g.alignment
    with open(dst, "wb") as f:
        f.write(head + b"\0" * pad)
        f.write(buf[g.data_offset:])
    del buf, c
    g.close()


def llamacpp_copy(path):
    """The file llama.cpp reads: `path` itself, except for a deepseek2 file
    with the legacy, unsplit attn_kv_b and no q LoRA (tiny-deepseek2, V2-Lite
    layout). llama.cpp recognises a model without q LoRA only by a layer
    count of 26 or 27 and otherwise requires deepseek2.attention.q_lora_rank
    (set to 0 here), and its legacy (non-MLA) attention expands K and V per
    head, so it needs head_count_kv = head_count, as legacy V2-Lite files
    have (mica-gen writes 1, the convention of the split-k_b/v_b MLA files).
    Neither key changes the function the file describes."""
    g = gguf_ref.GGUFFile(path)
    fix = {}
    if g.arch() == "deepseek2" and "blk.0.attn_kv_b.weight" in g.tensors:
        if "deepseek2.attention.q_lora_rank" not in g.kv and "blk.0.attn_q_a.weight" not in g.tensors:
            fix["deepseek2.attention.q_lora_rank"] = 0
        n_head = g.kv.get("deepseek2.attention.head_count")
        if isinstance(n_head, int) and g.kv.get("deepseek2.attention.head_count_kv") != n_head:
            fix["deepseek2.attention.head_count_kv"] = n_head
    g.close()
    if not fix:
        return path
    out = path[:-len(".gguf")] + ".llamacpp.gguf"
    if not os.path.exists(out):
        gguf_with_u32(path, out + ".part", fix)
        os.replace(out + ".part", out)
    return out


class Case:
    """One model: name, how to make it (a function returning the GGUF path),
    tolerance class (weight type), greedy length."""

    def __init__(self, name, make, typ, n_gen=N_GEN, moe=False):
        self.name, self.make, self.typ, self.n_gen, self.moe = name, make, typ, n_gen, moe
        self.path = None
        self.tf_ids = self.prompts = None
        self.err = None  # (status, msg) if the model could not be prepared


def case_list(r):
    """The cases, in order. To add an architecture: add its preset to DENSE or
    MOE; to add a file: append a Case whose make() returns its path."""
    cases = []
    presets = r.presets()
    for arch, preset in DENSE + MOE:
        if preset not in presets and (arch, preset) not in DENSE:
            continue  # a MoE preset that has not landed yet
        for typ in (r.args.types.split(",") if r.args.types else
                    TYPES + (EXTRA_TYPES if preset == EXTRA_PRESET else [])):
            cases.append(Case("%s_%s" % (arch, typ), lambda p=preset, t=typ: r.gen_model(p, t), typ,
                              moe=(arch, preset) in MOE))
    cases.append(Case("stories260k_F32", r.stories_model, "F32"))
    cases.append(Case("tiny_random_F16", lambda: r.data("tiny-random/llama-2-tiny-random.gguf"), "F16", n_gen=24))
    return cases


class Runner:
    def __init__(self, args):
        self.args = args
        self.build = os.environ.get("MICA_BUILD", "build")
        self.testdata = os.environ.get("MICA_TESTDATA", "../shared/testdata")
        self.node = os.environ.get("MICA_NODE", "node")
        self.ci = os.environ.get("CI", "") == "true"
        self.n_pass = self.n_fail = self.n_skip = 0
        self.tmp = args.keep or tempfile.mkdtemp(prefix="mica-llamacpp-")
        os.makedirs(self.tmp, exist_ok=True)

    # ------------------------------------------------------------ reporting
    def report(self, status, name, msg):
        print("%s %s %s" % (status, name, msg), flush=True)
        if status == "ok":
            self.n_pass += 1
        elif status == "FAIL":
            self.n_fail += 1
        else:
            self.n_skip += 1

    def missing_status(self, e):
        if self.ci:
            return "FAIL", "missing: %s (CI=true: missing input is a failure)" % e
        return "SKIP", "missing: %s" % e

    # ------------------------------------------------------------ tools and files
    def tool(self, name):
        p = os.path.join(self.build, name)
        if not os.access(p, os.X_OK):
            raise Missing("%s (build it first; MICA_BUILD=%s)" % (p, self.build))
        return p

    def data(self, rel):
        p = os.path.join(self.testdata, rel)
        if not os.path.isfile(p):
            raise Missing("%s (MICA_TESTDATA=%s)" % (p, self.testdata))
        return p

    def run(self, cmd, timeout=300):
        if self.args.verbose:
            print("  $ " + " ".join(cmd), flush=True)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=True)
        return r.stdout.decode()

    def presets(self):
        try:
            out = self.run([self.tool("mica-gen"), "--list"])
        except (Missing, subprocess.CalledProcessError):
            return set()
        self.known_presets = {ln.split()[0] for ln in out.splitlines() if ln.strip()}
        return self.known_presets

    known_presets = set()

    def gen_model(self, preset, typ):
        if preset not in self.known_presets:
            self.tool("mica-gen")
            raise Missing("preset %s (not in `mica-gen --list`)" % preset)
        seed = self.args.seed
        out = os.path.join(self.tmp, "%s-%s-s%d.gguf" % (preset, typ, seed))
        if not os.path.exists(out):
            self.run([self.tool("mica-gen"), "--preset", preset, "--type", typ, "--seed", str(seed),
                      "-o", out + ".part"])
            os.replace(out + ".part", out)
        return out

    def stories_model(self):
        out = os.path.join(self.tmp, "stories260K.gguf")
        if not os.path.exists(out):
            self.run([self.tool("mica"), "convert", "llama2c", self.data("tinystories/stories260K.bin"),
                      self.data("tinystories/tok512.bin"), "-o", out + ".part"])
            os.replace(out + ".part", out)
        return out

    def llamacpp(self, jobs):
        """Runs logits.mjs on a list of jobs; returns its per-job results. A
        native abort (a GGML_ASSERT on some model) fails that model's jobs
        only: the rest run again in a new process."""
        res = [None] * len(jobs)
        todo = list(range(len(jobs)))
        while todo:
            spec = os.path.join(self.tmp, "jobs-%d.json" % int(time.time() * 1e6))
            with open(spec, "w") as f:
                json.dump({"threads": self.args.threads, "jobs": [jobs[i] for i in todo]}, f)
            cmd = [self.node, os.path.join(HERE, "logits.mjs"), "--jobs", spec]
            if self.args.verbose:
                print("  $ " + " ".join(cmd), flush=True)
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
            loading = None
            for ln in r.stdout.decode().splitlines():
                if not ln.strip().startswith("{"):
                    continue
                o = json.loads(ln)
                if "load" in o:
                    loading = o["load"]
                elif "job" in o:
                    res[todo[o["job"]]] = o
            left = [i for i in todo if res[i] is None]
            if not left:
                break
            err = r.stderr.decode(errors="replace").strip().splitlines()
            why = "llama.cpp exited %d on %s: %s" % (r.returncode, loading, err[-1][-300:] if err else "")
            culprit = [i for i in left if jobs[i]["model"] == loading] if loading else []
            if not culprit:  # nothing to blame: fail everything left
                culprit = left
            for i in culprit:
                res[i] = {"ok": False, "error": why}
            todo = [i for i in left if res[i] is None]
        return res

    def mica_logits(self, path, ids):
        out = os.path.join(self.tmp, "mica-logits.f32")
        if os.path.exists(out):
            os.remove(out)
        self.run([self.tool("mica"), "logits", "-m", path, "--ids", " ".join(map(str, ids)), "-o", out,
                  "-t", str(self.args.threads)])
        a = np.fromfile(out, dtype="<f4")
        if a.size % len(ids):
            raise ValueError("mica logits file has %d floats, not a multiple of %d" % (a.size, len(ids)))
        return a.reshape(len(ids), -1).astype(np.float64)

    def mica_greedy(self, path, prompt, n):
        out = self.run([self.tool("mica"), "run", "-m", path, "--ids-in", " ".join(map(str, prompt)),
                        "-n", str(n), "--temp", "0", "--ids", "-t", str(self.args.threads)])
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        return [int(t) for t in lines[-1].split()] if lines else []

    # ------------------------------------------------------------ comparisons
    @staticmethod
    def compare_logits(ref, got, tol, untied=None):
        """ref = llama.cpp, got = mica; untied: positions judged by rel and KL
        (default all). Returns (ok, stats, why)."""
        if ref.shape != got.shape:
            return False, "", "shape mica %s vs llama.cpp %s" % (got.shape, ref.shape)
        if untied is None:
            untied = np.ones(len(ref), dtype=bool)
        scale = float(np.abs(ref).max())
        diff = np.abs(ref - got)
        maxdiff = float(diff[untied].max()) if untied.any() else 0.0
        rel = maxdiff / scale if scale > 0 else float("inf")
        agree = ref.argmax(axis=1) == got.argmax(axis=1)
        gaps = np.array([top2_gap(r) for r in ref])
        near = gaps <= tol["tie"] * scale
        dec = ~near
        n_dec = int(dec.sum())
        top1_dec = float(agree[dec].mean()) if n_dec else 1.0
        lp, lq = log_softmax(ref), log_softmax(got)
        kl_rows = (np.exp(lp) * (lp - lq)).sum(axis=1)
        kl = float(kl_rows[untied].mean()) if untied.any() else 0.0
        router = ""
        if not untied.all():
            router = " router-near-ties=%d (there: max rel %.3g, KL %.3g)" % (
                int((~untied).sum()), float(diff[~untied].max()) / scale, float(kl_rows[~untied].mean()))
        # positions that agree to float32 summation noise, and the first that
        # does not: an isolated rounding event (see README) leaves an exact
        # prefix, a wrong formula differs from the first position on
        row_rel = diff.max(axis=1) / scale
        exact = row_rel <= 1e-5
        first = int(np.argmin(exact)) if not exact.all() else None
        stats = ("rel=%.3g (max|diff|=%.3g scale=%.3g) top1=%d/%d decisive=%d/%d near-ties=%d "
                 "flips-at-near-ties=%d KL=%.3g min_gap=%.3g exact-rows=%d/%d first-inexact=%s" % (
                     rel, maxdiff, scale, int(agree.sum()), len(agree), int(agree[dec].sum()), n_dec,
                     int(near.sum()), int((~agree & near).sum()), kl, gaps.min() / scale,
                     int(exact.sum()), len(exact), first)) + router
        why = []
        if not np.isfinite(got).all():
            why.append("non-finite mica logits")
        if not rel <= tol["rel"]:
            why.append("rel %.3g > %.3g" % (rel, tol["rel"]))
        if top1_dec < tol["top1"]:
            why.append("decisive top1 %.3f < %.3f" % (top1_dec, tol["top1"]))
        if not kl <= tol["kl"]:
            why.append("KL %.3g > %.3g" % (kl, tol["kl"]))
        return not why, stats, "; ".join(why)

    @staticmethod
    def compare_greedy(lg, prompt, ref_ids, mica_ids, n, eog, tol):
        """lg: llama.cpp's teacher-forced logits of prompt + mica_ids.
        Returns (ok, msg)."""
        scale = float(np.abs(lg).max())
        bad, ties, worst = [], [], 0.0
        for k, t in enumerate(mica_ids):
            row = lg[len(prompt) + k - 1]
            best = int(np.argmax(row))
            d = float(row[best] - row[t])
            worst = max(worst, d)
            if t != best:
                (ties if d <= tol["tie"] * scale else bad).append((k, t, best, round(d, 6)))
        if any(t in eog for t in mica_ids[:-1]):
            bad.append(("continued past an end-of-generation id",))
        short = ""
        if len(mica_ids) < n:
            row = lg[len(prompt) + len(mica_ids) - 1]
            stop_ok = (mica_ids and mica_ids[-1] in eog) or any(
                row.max() - row[e] <= tol["tie"] * scale for e in eog)
            if not stop_ok:
                bad.append(("stopped after %d of %d without an end-of-generation id" % (len(mica_ids), n),))
            short = " stopped after %d" % len(mica_ids)
        same = mica_ids == ref_ids
        first = next((k for k, (a, b) in enumerate(zip(mica_ids, ref_ids)) if a != b), None)
        stats = "n=%d identical=%s worst_choice_deficit=%.3g (rel %.3g)%s" % (
            len(mica_ids), same, worst, worst / scale, short)
        if bad:
            return False, "%s; choices off llama.cpp's argmax (step, mica, llama.cpp, deficit): %s; " \
                          "llama.cpp=%s mica=%s" % (stats, bad[:4], ref_ids, mica_ids)
        if not same:
            stats += "; diverged at step %s at near-tie(s) %s (within %.3g*scale)" % (first, ties[:4], tol["tie"])
        return True, stats

    # ------------------------------------------------------------ driver
    def run_all(self):
        try:
            return self._run_all()
        finally:
            if not self.args.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def selected(self, c):
        only = self.args.only
        return not only or any(s in "logits_" + c.name or s in "greedy_" + c.name for s in only)

    def _run_all(self):
        t_start = time.time()
        cases = [c for c in case_list(self) if self.selected(c)]
        if not cases:
            print("FAIL llamacpp_select no case matches --only %s" % self.args.only)
            print("llamacpp: 0 passed, 1 failed")
            return 1
        # 1. models and inputs
        for c in cases:
            try:
                c.path = c.make()
            except Missing as e:
                c.err = self.missing_status(e)
                continue
            except subprocess.CalledProcessError as e:
                err = (e.stderr or b"").decode(errors="replace").strip().splitlines()
                c.err = ("FAIL", "making the model failed: %s: %s" % (" ".join(e.cmd), err[-1] if err else ""))
                continue
            # the numpy oracle's inputs: BOS (if the model has one) + LCG ids
            g = gguf_ref.GGUFFile(c.path)
            n_vocab = len(g.get("tokenizer.ggml.tokens"))
            bos = g.get("tokenizer.ggml.bos_token_id")
            g.close()
            head = [bos] if bos is not None and bos < n_vocab else []
            c.tf_ids = (head + lcg_ids(11, N_TF, 3, n_vocab))[:N_TF]
            c.prompts = [head + lcg_ids(100 + k, N_PROMPT, 3, n_vocab) for k in range(N_CANDIDATES)]
        live = [c for c in cases if c.err is None]
        try:
            self.tool("mica")
        except Missing as e:
            for c in live:
                c.err = self.missing_status(e)
            live = []
        # 2. llama.cpp: teacher-forced logits and the greedy prompt search, one process
        jobs = []
        for c in live:
            c.ll_out = os.path.join(self.tmp, c.name + ".tf.f32")
            c.lg_out = os.path.join(self.tmp, c.name + ".greedy.f32")
            c.ll_path = llamacpp_copy(c.path)
            jobs.append({"model": c.ll_path, "kind": "logits", "ids": c.tf_ids, "out": c.ll_out})
            jobs.append({"model": c.ll_path, "kind": "greedy", "prompts": c.prompts, "n": c.n_gen,
                         "tie": tol_of(c.typ, c.moe)["tie"], "out": c.lg_out})
        t0 = time.time()
        res = self.llamacpp(jobs) if jobs else []
        t_llama = time.time() - t0
        for k, c in enumerate(live):
            c.ll_res, c.lg_res = res[2 * k], res[2 * k + 1]
        # 3. mica, and llama.cpp's scores of mica's greedy sequences where they differ
        rescore = []
        for c in live:
            c.logits_result = self.do_logits(c)
            c.mica_ids = c.greedy_err = None
            if not c.lg_res.get("ok"):
                c.greedy_err = "llama.cpp: %s" % c.lg_res.get("error")
                continue
            c.prompt = c.prompts[c.lg_res["prompt_index"]]
            try:
                c.mica_ids = self.mica_greedy(c.path, c.prompt, c.n_gen)
            except subprocess.CalledProcessError as e:
                err = (e.stderr or b"").decode(errors="replace").strip().splitlines()
                c.greedy_err = "mica run failed: %s" % (err[-1] if err else e.returncode)
                continue
            if c.mica_ids != c.lg_res["ids"]:
                c.lg_out = os.path.join(self.tmp, c.name + ".rescore.f32")
                rescore.append(c)
        t0 = time.time()
        res = self.llamacpp([{"model": c.ll_path, "kind": "logits", "ids": c.prompt + c.mica_ids, "out": c.lg_out}
                             for c in rescore]) if rescore else []
        t_llama += time.time() - t0
        for c, r in zip(rescore, res):
            if not r.get("ok"):
                c.greedy_err = "llama.cpp rescoring: %s" % r.get("error")
        # 4. report
        for c in cases:
            if c.err is not None:
                self.report(c.err[0], "logits_" + c.name, c.err[1])
                self.report(c.err[0], "greedy_" + c.name, c.err[1])
                continue
            self.report(*c.logits_result)
            self.report(*self.do_greedy(c))
        print("llama.cpp time %.1fs, total %.1fs" % (t_llama, time.time() - t_start))
        summary = "llamacpp: %d passed, %d failed" % (self.n_pass, self.n_fail)
        if self.n_skip:
            summary += ", %d skipped" % self.n_skip
        print(summary)
        return 1 if self.n_fail else 0

    def do_logits(self, c):
        name = "logits_" + c.name
        if not c.ll_res.get("ok"):
            return "FAIL", name, "llama.cpp: %s" % c.ll_res.get("error")
        try:
            got = self.mica_logits(c.path, c.tf_ids)
        except subprocess.CalledProcessError as e:
            err = (e.stderr or b"").decode(errors="replace").strip().splitlines()
            return "FAIL", name, "mica logits failed: %s" % (err[-1] if err else e.returncode)
        except ValueError as e:
            return "FAIL", name, str(e)
        n_vocab = c.ll_res["n_vocab"]
        ref = np.fromfile(c.ll_out, dtype="<f4").reshape(len(c.tf_ids), n_vocab).astype(np.float64)
        tol = tol_of(c.typ, c.moe)
        ok, stats, why = self.compare_logits(ref, got, tol)
        if not ok and c.moe:  # judge again without the router near-ties
            rg = router_gaps(c.path, c.tf_ids, c.typ)
            if rg is not None:
                ok, stats, why = self.compare_logits(ref, got, tol, rg[0] > rg[1])
        stats = "[%s%s] %s" % (c.typ, " moe" if c.moe else "", stats)
        return ("ok", name, stats) if ok else ("FAIL", name, "%s | %s" % (why, stats))

    def do_greedy(self, c):
        name = "greedy_" + c.name
        if c.greedy_err:
            return "FAIL", name, c.greedy_err
        r = c.lg_res
        seq = c.prompt + c.mica_ids
        lg = np.fromfile(c.lg_out, dtype="<f4").reshape(len(seq), r["n_vocab"]).astype(np.float64)
        ok, msg = self.compare_greedy(lg, c.prompt, r["ids"], c.mica_ids, c.n_gen, set(r["eog"]), tol_of(c.typ, c.moe))
        msg = "[%s] prompt #%d min_gap=%.3g (rel %.3g, target %.3g) llama.cpp tf-vs-incremental mismatches=%d %s" % (
            c.typ, r["prompt_index"], r["min_gap"], r["min_gap"] / r["scale"], r["target"] / r["scale"],
            r["tf_mismatch"], msg)
        return ("ok" if ok else "FAIL"), name, msg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", help="run only cases whose name contains this (repeatable)")
    ap.add_argument("--keep", metavar="DIR", help="keep generated models and logits in DIR")
    ap.add_argument("--seed", type=int, default=SEED, help="mica-gen weight seed (default %d)" % SEED)
    ap.add_argument("--types", help="comma-separated weight types of the preset cases (default %s)" % ",".join(TYPES))
    ap.add_argument("-t", "--threads", type=int, default=1, help="threads for mica and llama.cpp (default 1)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the commands run")
    return Runner(ap.parse_args()).run_all()


if __name__ == "__main__":
    sys.exit(main())
