#!/usr/bin/python3
"""oracle_compare.py - checks mica's forward pass against the numpy reference
(tests/ref/model_ref.py) on the same GGUF files.

Cases (each prints one line `ok NAME stats`, `FAIL NAME why stats`, `TIE NAME ...`
or `SKIP NAME why`; the last line is `oracle: N passed, M failed, K skipped`):

  gguf_ref_selftest         the reference's own dequantisers vs scalar transcriptions
  ref_kv_consistency        reference greedy with KV cache == by recomputation (tiny-random)
  ref_stories260k_greedy    the reference vs llama2.c run.c's 124 greedy ids (external truth)
  ref_rope_neox_equiv       NEOX on HF-permuted q/k == NORM on GGUF q/k (stories260K weights)
  logits_ARCH_TYPE          mica `logits` vs reference teacher-forced logits, tiny presets
  greedy_ARCH_TYPE          mica `run --temp 0 --ids` vs reference greedy, 32 tokens
  logits_moe_* / greedy_moe_*  the same for the tiny MoE presets (tests/ref/moe_ref.py)
  logits_mimo2_* / greedy_mimo2_*  the same for tiny-mimo2 (tests/ref/mimo_ref.py)
  logits_deepseek{2,3}_* / greedy_deepseek{2,3}_*  tiny deepseek2 presets (tests/ref/deepseek_ref.py)
  tiny_random_logits/greedy the real llama-2-tiny-random.gguf (F16)
  real_qwen3-0.6b_Q8_0      realistic shape, 16 positions (32 with --full; skipped by --quick)
  real_tinyllama-1.1b_Q4_0  realistic shape, only with --full

Tolerances and their reasons are in tests/ref/README.md and in TOL below.
Environment: MICA_BUILD (default build), MICA_TESTDATA (default ../shared/testdata),
CI=true turns a missing tool or data file into a failure instead of a skip.
Exit status 1 if any case failed.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.dont_write_bytecode = True  # keep tests/ref free of __pycache__
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gguf_ref  # noqa: E402
import model_ref  # noqa: E402
import moe_ref  # noqa: E402
import deepseek_ref  # noqa: E402
import mimo_ref  # noqa: E402

ARCHS = {"llama": "tiny-llama", "qwen2": "tiny-qwen2", "qwen3": "tiny-qwen3"}
LOGIT_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K"]
GREEDY_TYPES = ["F32", "F16", "Q8_0", "Q4_0", "Q4_K", "Q6_K"]
# The remaining weight types, on one dense preset only (make check stays fast):
# logits and greedy for each.
EXTRA_TYPES = ["Q5_K", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS", "Q3_K", "Q2_K", "MXFP4"]
EXTRA_ARCH = "qwen3"
SEED = 1234          # mica-gen weight seed (same float weights for every type)
N_TF = 48            # teacher-forced sequence length
N_GEN = 32           # greedy tokens
N_PROMPT = 6         # greedy prompt length
N_PROMPT_CANDIDATES = 64

# Per weight type:
#   rel     max |mica - ref| / max |ref| allowed on teacher-forced logits
#   tie     a position whose reference top-1/top-2 gap is <= tie * max|ref| is a
#           near-tie: a top-1 flip there is reported but not counted; in greedy
#           runs a mica choice != reference argmax is accepted (as a TIE, not a
#           pass) iff ref[argmax] - ref[choice] <= tie * max|ref|
#   top1    minimum fraction of the decisive (non-near-tie) positions whose
#           argmax agrees
#   kl      maximum mean KL(ref || mica) over positions
# Float weight types: mica does no activation quantisation, so only summation
# order (float32 accumulation vs the float64 reference) differs -> near-exact.
# Quantised weight types: mica quantises activations to Q8_0 / Q8_K (FORMATS.md
# 2.4), which the reference (float activations) does not; simulating that in the
# reference (model_ref act_quant) on an earlier, tie-heavier set of tiny models
# gave rel <= 0.029, mean KL <= 2.9e-3 and top-1 flips only at gaps
# <= 0.020 * max|ref| (README.md).
# TESTING_NOTES.md: top-1 >= 97% and mean KL <= 5e-3 on the same quantised file
# separate a correct engine from a wrong one.
# F32 is held 10x tighter than F16/BF16, which leave room for a kernel that
# rounds activations to the weight's half type as ggml does (FORMATS.md 2.5).
F32_TOL = {"rel": 1e-4, "tie": 2e-4, "top1": 1.0, "kl": 1e-6}
FLOAT_TOL = {"rel": 1e-3, "tie": 2e-3, "top1": 1.0, "kl": 1e-5}
# The 2-layer tiny presets are held tighter than the 22/28-layer realistic
# shapes, where the activation-quantisation error has more layers to grow in:
# measured on mica rel <= 0.015 and KL <= 4.6e-4 (tiny), and a qwen3 without its
# q/k norm gives rel 0.034 / KL 4.3e-3 on Q4_K, which the looser bounds would pass.
QUANT_TOL = {"rel": 3e-2, "tie": 3e-2, "top1": 0.97, "kl": 2e-3}
REAL_QUANT_TOL = {"rel": 5e-2, "tie": 3e-2, "top1": 0.97, "kl": 5e-3}
TOL = {"F32": F32_TOL, "F16": FLOAT_TOL, "BF16": FLOAT_TOL,
       "Q8_0": QUANT_TOL, "Q4_0": QUANT_TOL, "Q4_K": QUANT_TOL, "Q6_K": QUANT_TOL}
TOL.update({t: QUANT_TOL for t in EXTRA_TYPES})


class Missing(Exception):
    """A tool or data file is absent (a skip, or a failure when CI=true)."""


def lcg_ids(seed, n, lo, hi):
    """Deterministic pseudo-random ids in [lo, hi), independent of numpy's RNG."""
    x = (seed * 2654435761 + 12345) & 0xFFFFFFFF
    out = []
    for _ in range(n):
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        out.append(lo + (x >> 8) % (hi - lo))
    return out


def log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    y = x - m
    return y - np.log(np.exp(y).sum(axis=-1, keepdims=True))


def top2_gap(row):
    t = np.partition(row, -2)[-2:]
    return float(t[1] - t[0])


class Runner:
    def __init__(self, args):
        self.args = args
        self.build = os.environ.get("MICA_BUILD", "build")
        self.testdata = os.environ.get("MICA_TESTDATA", "../shared/testdata")
        self.ci = os.environ.get("CI", "") == "true"
        self.n_pass = self.n_fail = self.n_skip = 0
        self.tmp = args.keep or tempfile.mkdtemp(prefix="mica-oracle-")
        os.makedirs(self.tmp, exist_ok=True)
        self.models = {}  # path -> RefModel
        self.timing = {}

    # ---------------------------------------------------------------- reporting
    def report(self, status, name, msg):
        print("%s %s %s" % (status, name, msg), flush=True)
        if status == "ok":
            self.n_pass += 1
        elif status == "FAIL":
            self.n_fail += 1
        else:
            self.n_skip += 1

    def case(self, name, fn, *a):
        if self.args.only and not any(s in name for s in self.args.only):
            return
        t0 = time.time()
        try:
            status, msg = fn(*a)
        except Missing as e:
            status, msg = ("FAIL" if self.ci else "SKIP"), "missing: %s%s" % (
                e, " (CI=true: missing input is a failure)" if self.ci else "")
        except subprocess.CalledProcessError as e:
            err = (e.stderr or b"").decode(errors="replace").strip().splitlines()
            status, msg = "FAIL", "command failed (%d): %s: %s" % (
                e.returncode, " ".join(e.cmd), err[-1] if err else "")
        except subprocess.TimeoutExpired as e:
            status, msg = "FAIL", "timeout: %s" % " ".join(e.cmd)
        except Exception as e:  # a bug in the reference or a malformed output file
            status, msg = "FAIL", "exception %s: %s" % (type(e).__name__, e)
        self.report(status, name, "%s [%.1fs]" % (msg, time.time() - t0))

    # ---------------------------------------------------------------- tools
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

    def run(self, cmd, timeout=600):
        if self.args.verbose:
            print("  $ " + " ".join(cmd), flush=True)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, check=True)
        return r.stdout.decode()

    def gen_model(self, preset, typ, seed=SEED):
        out = os.path.join(self.tmp, "%s-%s-s%d.gguf" % (preset, typ, seed))
        if not os.path.exists(out):
            t0 = time.time()
            self.run([self.tool("mica-gen"), "--preset", preset, "--type", typ,
                      "--seed", str(seed), "-o", out + ".part"])
            os.replace(out + ".part", out)
            self.timing["gen " + os.path.basename(out)] = time.time() - t0
        return out

    def ref(self, path):
        if path not in self.models:
            self.models[path] = moe_ref.open_model(path)
        return self.models[path]

    def mica_logits(self, path, ids, n_vocab):
        out = os.path.join(self.tmp, "logits.f32")
        if os.path.exists(out):
            os.remove(out)
        self.run([self.tool("mica"), "logits", "-m", path, "--ids", " ".join(map(str, ids)), "-o", out])
        a = np.fromfile(out, dtype="<f4")
        if a.size != len(ids) * n_vocab:
            raise ValueError("mica logits file has %d floats, expected %d x %d" % (a.size, len(ids), n_vocab))
        return a.reshape(len(ids), n_vocab).astype(np.float64)

    def mica_greedy(self, path, prompt, n):
        outp = self.run([self.tool("mica"), "run", "-m", path, "--ids-in", " ".join(map(str, prompt)),
                         "-n", str(n), "--temp", "0", "--ids"])
        lines = [ln for ln in outp.strip().splitlines() if ln.strip()]
        if not lines:
            return []
        return [int(t) for t in lines[-1].split()]

    # ---------------------------------------------------------------- comparisons
    def compare_logits(self, ref_lg, mica_lg, tol):
        """Returns (ok, stats, why): why names every tolerance exceeded."""
        scale = float(np.abs(ref_lg).max())
        diff = np.abs(ref_lg - mica_lg)
        maxdiff = float(diff.max())
        rel = maxdiff / scale if scale > 0 else float("inf")
        rt = ref_lg.argmax(axis=1)
        mt = mica_lg.argmax(axis=1)
        gaps = np.array([top2_gap(r) for r in ref_lg])
        agree = rt == mt
        near = gaps <= tol["tie"] * scale          # reference near-ties
        decisive = ~near
        n_dec = int(decisive.sum())
        top1_dec = float(agree[decisive].mean()) if n_dec else 1.0
        n_tie_flips = int((~agree & near).sum())
        lp, lq = log_softmax(ref_lg), log_softmax(mica_lg)
        kl = float((np.exp(lp) * (lp - lq)).sum(axis=1).mean())
        finite = bool(np.isfinite(mica_lg).all())
        stats = ("max|diff|=%.3g scale=%.3g rel=%.3g top1=%d/%d decisive_top1=%d/%d "
                 "(near-ties %d, flips at near-ties %d) KL=%.3g min_gap=%.3g (rel %.3g)" % (
                     maxdiff, scale, rel, int(agree.sum()), len(agree), int(agree[decisive].sum()), n_dec,
                     int(near.sum()), n_tie_flips, kl, gaps.min(), gaps.min() / scale))
        why = []
        if not finite:
            why.append("non-finite logits")
        if not rel <= tol["rel"]:
            why.append("rel %.3g > %.3g" % (rel, tol["rel"]))
        if top1_dec < tol["top1"]:
            why.append("decisive top1 %.3f < %.3f" % (top1_dec, tol["top1"]))
        if not kl <= tol["kl"]:
            why.append("KL %.3g > %.3g" % (kl, tol["kl"]))
        return (not why), stats, "; ".join(why)

    def compare_greedy(self, m, prompt, mica_ids, n, tol):
        """Greedy check robust to near-ties: the reference scores mica's own
        sequence teacher-forced; every mica choice must be the reference argmax
        or within tie*scale of it. Returns (status, msg)."""
        ref_ids, ref_gaps = m.greedy(prompt, n)
        seq = list(prompt) + list(mica_ids)
        lg = m.logits(seq)
        scale = float(np.abs(lg).max())
        first_div = None
        for k, (a, b) in enumerate(zip(ref_ids, mica_ids)):
            if a != b:
                first_div = k
                break
        worst = 0.0
        bad = []
        ties = []
        for k, t in enumerate(mica_ids):
            row = lg[len(prompt) + k - 1]
            best = int(np.argmax(row))
            d = float(row[best] - row[t])
            worst = max(worst, d)
            if t != best:
                (ties if d <= tol["tie"] * scale else bad).append((k, t, best, d))
        short = ""
        if len(mica_ids) < n:
            # mica may stop at an end-of-generation token
            eos = m.eos
            last_ok = mica_ids and mica_ids[-1] == eos
            row = lg[len(seq) - 1]
            next_ok = eos is not None and row.max() - row[eos] <= tol["tie"] * scale
            if not (last_ok or next_ok):
                bad.append(("len", len(mica_ids), n, 0.0))
            short = " stopped after %d (eos %s)" % (len(mica_ids), eos)
        stats = "n=%d identical=%s min_ref_gap=%.3g (rel %.3g) worst_choice_deficit=%.3g scale=%.3g%s" % (
            len(mica_ids), mica_ids == ref_ids[:len(mica_ids)], min(ref_gaps), min(ref_gaps) / scale,
            worst, scale, short)
        if bad:
            return "FAIL", "%s; choices not at the reference argmax (step, mica, ref, deficit): %s; " \
                           "ref=%s mica=%s" % (stats, bad[:4], ref_ids, mica_ids)
        if ties or first_div is not None:
            return "TIE", "%s; diverged at step %s at near-tie(s) %s (within tie tol %.3g*scale)" % (
                stats, first_div, ties[:4], tol["tie"])
        return "ok", stats

    # ---------------------------------------------------------------- cases
    def case_selftest(self):
        import io
        import contextlib
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = gguf_ref.selftest()
        lines = buf.getvalue().strip().splitlines()
        return ("ok" if rc == 0 else "FAIL"), "; ".join(lines[:-1]) if rc else lines[-1]

    def case_kv_consistency(self):
        m = self.ref(self.data("tiny-random/llama-2-tiny-random.gguf"))
        prompt = [1] + lcg_ids(7, 7, 3, m.n_vocab)
        a, _ = m.greedy(prompt, 24)
        b, _ = m.greedy(prompt, 24, use_cache=False)
        full = m.logits(prompt + a)
        lg, cache = m.forward(prompt)
        rows = [lg]
        for k, t in enumerate(a):
            lg, cache = m.forward([t], len(prompt) + k, cache)
            rows.append(lg)
        inc = np.concatenate(rows)
        d = float(np.abs(inc - full).max())
        ok = a == b and d < 1e-9 * float(np.abs(full).max())
        return ("ok" if ok else "FAIL"), "cached==recomputed=%s incremental-vs-full max|diff|=%.3g" % (a == b, d)

    STORIES_IDS = (
        "1 403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 292 "
        "411 322 265 282 295 433 426 385 328 432 358 394 261 370 432 352 266 268 388 426 338 391 266 267 337 "
        "335 312 432 398 312 286 267 414 270 333 415 426 13 438 310 439 419 357 336 432 313 438 310 432 278 "
        "316 439 419 298 414 267 265 282 295 433 426 436 317 286 296 418 269 279 292 416 439 413 409 416 327 "
        "263 415 294 267 400 426 338 336 432 313 442 391 267 337 335 364 420 268 388 432 398 359 280 303 439 "
        "413 272 417 264")

    def case_stories(self):
        """The reference itself against an external implementation: llama2.c
        run.c's greedy ids for stories260K (testdata/tinystories/README.md)."""
        m = model_ref.RefModel(self.data("tinystories/stories260K.bin"))
        exp = [int(t) for t in self.STORIES_IDS.split()]
        ids, gaps = m.greedy(exp[:5], len(exp) - 5)
        ok = ids == exp[5:]
        first = next((k for k, (a, b) in enumerate(zip(ids, exp[5:])) if a != b), None)
        return ("ok" if ok else "FAIL"), "%d/%d greedy ids equal run.c's (first diff at %s) min_gap=%.3g" % (
            sum(a == b for a, b in zip(ids, exp[5:])), len(exp) - 5, first, min(gaps))

    def case_neox_equiv(self):
        """NEOX rotation on HF-permuted q/k rows == NORM rotation on the GGUF
        (un-permuted) rows (MODEL_FAMILIES.md 0.4), on stories260K's weights."""
        a = model_ref.RefModel(self.data("tinystories/stories260K.bin"))
        b = model_ref.RefModel(self.data("tinystories/stories260K.bin"))
        b.rope_type = model_ref.ROPE_NEOX
        d = b.head_dim_k
        for il in range(b.n_layer):
            for nm, nh in (("attn_q", b.n_head), ("attn_k", b.n_head_kv)):
                key = "blk.%d.%s.weight" % (il, nm)
                w = b._cache[key]
                b._cache[key] = w.reshape(nh, d // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)
        ids = [int(t) for t in self.STORIES_IDS.split()][:40]
        la, lb = a.logits(ids), b.logits(ids)
        diff = float(np.abs(la - lb).max())
        ok = diff < 1e-9 * float(np.abs(la).max())
        return ("ok" if ok else "FAIL"), "max|NORM - NEOX(permuted)|=%.3g" % diff

    def case_logits(self, path, typ, ids=None):
        m = self.ref(path)
        if ids is None:
            ids = ([m.bos] if m.bos is not None and m.bos < m.n_vocab else []) + \
                lcg_ids(11, N_TF, 3, m.n_vocab)
            ids = ids[:N_TF]
        mica_lg = self.mica_logits(path, ids, m.n_vocab)
        ref_lg = m.logits(ids)
        ok, stats, why = self.compare_logits(ref_lg, mica_lg, TOL[typ])
        return ("ok", stats) if ok else ("FAIL", why + " | " + stats)

    def pick_prompt(self, m, n, tol):
        """A deterministic prompt whose reference greedy run has no near-tie:
        candidates are tried in a fixed order until one keeps every top-1/top-2
        gap >= tie * scale (scale = max|logit| of the first candidate's run);
        otherwise the candidate with the largest smallest gap. A candidate is
        abandoned as soon as its gap falls below the best found so far.
        Returns (prompt, its smallest gap, target)."""
        best = None
        target = None
        for c in range(N_PROMPT_CANDIDATES):
            prompt = ([m.bos] if m.bos is not None and m.bos < m.n_vocab else []) + \
                lcg_ids(100 + c, N_PROMPT, 3, m.n_vocab)
            if target is None:
                ids, gaps = m.greedy(prompt, n)
                target = tol["tie"] * float(np.abs(m.logits(prompt + ids)).max())
            elif best is None:
                ids, gaps = m.greedy(prompt, n)
            else:
                ids, gaps = m.greedy(prompt, n, abort_below=best[0])
                if len(ids) < n and gaps[-1] < best[0]:
                    continue
            if m.eos is not None and m.eos in ids:
                continue  # an early end of generation would shorten the check
            g = min(gaps)
            if best is None or g > best[0]:
                best = (g, prompt)
            if g >= target:
                break
        if best is None:  # every candidate ended early: take the first
            prompt = ([m.bos] if m.bos is not None and m.bos < m.n_vocab else []) + \
                lcg_ids(100, N_PROMPT, 3, m.n_vocab)
            return prompt, min(m.greedy(prompt, n)[1]), target
        return best[1], best[0], target

    def case_greedy(self, path, typ, prompt=None, n=N_GEN):
        m = self.ref(path)
        sel = ""
        if prompt is None:
            prompt, gap, target = self.pick_prompt(m, n, TOL[typ])
            sel = " (prompt search: min gap %.3g vs target %.3g)" % (gap, target)
        mica_ids = self.mica_greedy(path, prompt, n)
        status, msg = self.compare_greedy(m, prompt, mica_ids, n, TOL[typ])
        return status, "prompt=%s%s %s" % (" ".join(map(str, prompt)), sel, msg)

    def case_real(self, preset, typ, n_tokens):
        t0 = time.time()
        path = self.gen_model(preset, typ)
        t_gen = time.time() - t0
        m = model_ref.RefModel(path)
        ids = ([m.bos] if m.bos is not None and m.bos < m.n_vocab else []) + lcg_ids(21, n_tokens, 3, m.n_vocab)
        ids = ids[:n_tokens]
        t1 = time.time()
        mica_lg = self.mica_logits(path, ids, m.n_vocab)
        t_mica = time.time() - t1
        t2 = time.time()
        ref_lg = m.logits(ids)
        t_ref = time.time() - t2
        ok, stats, why = self.compare_logits(ref_lg, mica_lg, REAL_QUANT_TOL)
        stats += " (gen %.1fs, mica %.1fs, ref %.1fs)" % (t_gen, t_mica, t_ref)
        if not self.args.keep:
            os.remove(path)
        return ("ok", stats) if ok else ("FAIL", why + " | " + stats)

    def run_all(self):
        try:
            return self._run_all()
        finally:
            if not self.args.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def _run_all(self):
        a = self.args
        self.case("gguf_ref_selftest", self.case_selftest)
        self.case("ref_kv_consistency", self.case_kv_consistency)
        self.case("ref_stories260k_greedy", self.case_stories)
        self.case("ref_rope_neox_equiv", self.case_neox_equiv)
        for arch, preset in ARCHS.items():
            for typ in LOGIT_TYPES + (EXTRA_TYPES if arch == EXTRA_ARCH else []):
                def lcase(preset=preset, typ=typ):
                    return self.case_logits(self.gen_model(preset, typ), typ)
                self.case("logits_%s_%s" % (arch, typ), lcase)
                if typ in GREEDY_TYPES or typ in EXTRA_TYPES:
                    def gcase(preset=preset, typ=typ):
                        return self.case_greedy(self.gen_model(preset, typ), typ)
                    self.case("greedy_%s_%s" % (arch, typ), gcase)
        moe_ref.add_cases(self)
        mimo_ref.add_cases(self)
        deepseek_ref.add_cases(self)
        tr = "tiny-random/llama-2-tiny-random.gguf"
        self.case("tiny_random_logits", lambda: self.case_logits(
            self.data(tr), "F16", [1] + lcg_ids(5, N_TF - 1, 3, 32000)))
        self.case("tiny_random_greedy", lambda: self.case_greedy(self.data(tr), "F16", None, 24))
        # realistic shapes: qwen3-0.6b Q8_0 takes ~35 s with 16 positions (generation
        # ~16 s, reference ~17 s with this machine's netlib BLAS), so it is in the
        # default run; --full uses 32 positions and adds tinyllama-1.1b Q4_0
        # (~150 s: generation ~90 s, reference ~55 s).
        if not a.quick:
            self.case("real_qwen3-0.6b_Q8_0", self.case_real, "qwen3-0.6b", "Q8_0", 32 if a.full else 16)
        if a.full:
            self.case("real_tinyllama-1.1b_Q4_0", self.case_real, "tinyllama-1.1b", "Q4_0", 32)
        print("oracle: %d passed, %d failed, %d skipped" % (self.n_pass, self.n_fail, self.n_skip))
        return 1 if self.n_fail else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true",
                    help="realistic-shape cases with 32 positions, plus tinyllama-1.1b Q4_0 (slow)")
    ap.add_argument("--quick", action="store_true", help="skip the realistic-shape case (qwen3-0.6b)")
    ap.add_argument("--only", action="append", help="run only cases whose name contains this (repeatable)")
    ap.add_argument("--keep", metavar="DIR", help="keep generated models and logits in DIR")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the commands run")
    return Runner(ap.parse_args()).run_all()


if __name__ == "__main__":
    sys.exit(main())
