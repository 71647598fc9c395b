"""funcgrad benchmark: eager, jit and peers as ratios to hand-written NumPy.

    python bench/run.py                  # everything, one BLAS thread
    python bench/run.py --quick          # a fast pass (fewer, shorter repeats)
    python bench/run.py --only xor,chain --json out.json
    python bench/run.py --no-peers       # funcgrad and NumPy only

Every implementation is first checked against the NumPy reference (same
gradients within a dtype-aware tolerance); only then is it timed.  Times are
medians over interleaved rounds (every candidate once per round, in rotating
order).  The thread count of BLAS/OpenMP is fixed *before* NumPy is imported.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few short repeats (a smoke run)")
    ap.add_argument("--only", default="", help="comma-separated workload names (substrings match)")
    ap.add_argument("--json", default="", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--no-peers", action="store_true", help="skip autograd, JAX and PyTorch")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (default 1)")
    ap.add_argument("--repeats", type=int, default=0, help="interleaved rounds (default 15, quick 3)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="what the table reports: wall time (default) or this process's CPU "
                         "time, steadier on a machine shared with other work; both go to --json")
    ap.add_argument("--list", action="store_true", help="list the workloads and exit")
    return ap.parse_args(argv)


def _set_threads(n: int) -> None:
    """Fix BLAS/OpenMP/XLA threads; must run before NumPy (or a peer) is imported."""
    if "numpy" in sys.modules:
        print("warning: numpy was imported before the thread count was set", file=sys.stderr)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(n)
    if n == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        if "multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                       "intra_op_parallelism_threads=1").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _set_threads(args.threads)
    sys.path[:0] = [HERE, REPO]
    import json

    import harness as H
    from workloads import WORKLOADS, Context, Peers

    if args.list:
        for name, build in WORKLOADS.items():
            print(f"{name:12s} {(build.__doc__ or '').strip()}")
        return 0
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    names = [n for n in WORKLOADS if not wanted or any(w == n or w in n for w in wanted)]
    if not names:
        print(f"no workload matches --only {args.only!r}; known: {', '.join(WORKLOADS)}",
              file=sys.stderr)
        return 2
    peers = Peers(enabled=not args.no_peers)
    ctx = Context(peers=peers, quick=args.quick, clock=args.clock)
    env = H.environment(peers.versions, REPO)
    repeats = args.repeats or (3 if args.quick else 15)
    batch = 0.004 if args.quick else 0.04
    print(f"funcgrad bench: python {env['python']}, numpy {env['numpy']}, cpu {env['cpu']} "
          f"x{env['cores']}, threads {args.threads}, clock {args.clock}, load {env['loadavg_at_start']}, "
          f"peers {peers.versions or 'none'}", flush=True)

    rows: list[H.Row] = []
    failures = 0
    for name in names:
        print(f"[{name}] ...", flush=True)
        try:
            wl = WORKLOADS[name](ctx)
        except Exception as e:   # a workload that cannot even be built is a failure
            rows.append(H.Row(name, "(build)", None, error=f"{type(e).__name__}: {e}"))
            failures += 1
            continue
        new, bad = _run_workload(H, wl, ctx, repeats, batch)
        failures += bad
        rows += new
        for r in new:
            print("   " + H.format_table([r]).splitlines()[-1], flush=True)

    table = H.format_table(rows, markdown=args.markdown)
    print()
    print(table)
    print(f"\n{len(rows)} rows, {failures} failed; times ({args.clock} clock) are medians of "
          f"{repeats} interleaved rounds; ratio = time / NumPy reference time")
    if args.json:
        with open(args.json, "w") as f:
            env["loadavg_at_end"] = os.getloadavg()
            json.dump({"environment": env, "quick": args.quick, "repeats": repeats,
                       "clock": args.clock,
                       "rows": [_row_json(r) for r in rows]}, f, indent=1, default=str)
    return 1 if failures else 0


def _row_json(r) -> dict:
    d = {k: getattr(r, k) for k in ("workload", "impl", "seconds", "ratio", "per_op_us", "extra",
                                    "met", "error", "samples")}
    d["targets"] = [{"text": t.text(), "metric": t.metric, "op": t.op, "bound": t.bound,
                     "source": t.source} for t in r.targets]
    return d


def _run_workload(H, wl, ctx, repeats: int, batch: float) -> tuple[list, int]:
    """Check every implementation against the reference, time the good ones, attach targets."""
    if wl.measure is not None:
        try:
            rows = wl.measure(ctx)
        except Exception as e:
            return [H.Row(wl.name, "(measure)", None, error=f"{type(e).__name__}: {e}")], 1
        for r in rows:
            r.judge()
        return rows, 0
    ref = wl.impls[0]
    failures = 0
    ref_run, ref_check = ref.run(), (ref.check or ref.run)()
    good: dict[str, H.Impl] = {}
    errors: dict[str, str] = {}
    for impl in wl.impls[1:]:
        try:
            H.assert_same(f"{wl.name}/{impl.name}", impl.run(), ref_run, wl.check_dtype)
            if impl.check is not None and ref.check is not None:
                H.assert_same(f"{wl.name}/{impl.name} (gradients)", impl.check(), ref_check,
                              wl.check_dtype)
            good[impl.name] = impl
        except AssertionError as e:
            errors[impl.name] = f"WRONG: {e}"
        except Exception as e:
            errors[impl.name] = f"{type(e).__name__}: {e}"
    fns = {ref.name: ref.run} | {n: i.run for n, i in good.items()}
    times = H.time_interleaved(fns, repeats, batch)
    clock = ctx.clock
    t_ref = H.median(times[ref.name][clock])
    by: dict[str, H.Row] = {}
    for impl in wl.impls:
        if impl.name in errors:
            r = H.Row(wl.name, impl.name, None, error=errors[impl.name])
            if impl.name.startswith("funcgrad"):
                failures += 1
        else:
            tt = times[impl.name]
            t = H.median(tt[clock])
            r = H.Row(wl.name, impl.name, t, t / t_ref,
                      per_op_us=(t * 1e6 / wl.ops) if wl.ops else None)
            r.samples = {k: {"median": H.median(v), "min": min(v), "n": len(v)}
                         for k, v in tt.items()}
            if impl.note:
                r.extra["note"] = impl.note
        by[impl.name] = r
    if wl.post is not None:
        wl.post(by)
    for tg in wl.targets:
        if tg.impl in by:
            by[tg.impl].targets.append(tg)
    rows = list(by.values())
    for r in rows:
        r.judge()
        if r.error:
            print(f"   ! {r.workload}/{r.impl}: {r.error}", file=sys.stderr)
    return rows, failures


if __name__ == "__main__":
    sys.exit(main())
