"""Load times of every real data set, and how fast a missing data set fails offline.

    HYBRID_DATA=../shared/data .venv/bin/python benchmarks/bench_load.py [--repeat 3]

Prints the best of `--repeat` wall-clock times per loader (seconds), with the time of a bare
`json.load` of the same XQuAD-R/MLQA-R files as the peer: the ratio is what the checks cost on
top of parsing. The fail-fast rows run in a fresh interpreter with an empty cache and no
HYBRID_DATA, offline (HF_HUB_OFFLINE=1) and 'online' (no offline flag: the download is tried
and fails however this machine fails to reach the source)."""

import argparse, json, os, subprocess, sys, tempfile, time, warnings
from pathlib import Path


def best(fn, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


FAIL_SNIPPET = """
import time; t0 = time.perf_counter()
from hybrid_replication.data import load_lareqa, DataError
t1 = time.perf_counter()
try: load_lareqa('xquad-r', langs=['en']); print('LOADED?!')
except DataError as e: print(f'{time.perf_counter() - t1:.3f} {time.perf_counter() - t0:.3f} ' + str(e)[:160])
"""


def fail_fast(offline: bool):
    with tempfile.TemporaryDirectory() as cache:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("HYBRID_DATA", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HYBRID_OFFLINE")
        }
        env["XDG_CACHE_HOME"] = cache
        if offline:
            env["HF_HUB_OFFLINE"] = "1"
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", FAIL_SNIPPET], env=env, capture_output=True, text=True, timeout=120
        ).stdout.strip()
        return time.perf_counter() - t0, out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    from hybrid_replication.data import load_lareqa, data_dir, LAREQA_LANGS
    from hybrid_replication.pairs import afriqa_pairs, mintaka_pairs, ntrex_pairs, lareqa_pairs
    from hybrid_replication.miracl_data import miracl_inventory

    root = data_dir()
    print(f"data folder: {root}")
    rows = []
    for name in ("xquad-r", "mlqa-r"):
        ours = best(lambda: load_lareqa(name), a.repeat)
        peer = best(
            lambda: [
                json.loads((root / name / f"{l}.json").read_text(encoding="utf-8")) for l in LAREQA_LANGS[name]
            ],
            a.repeat,
        )
        rows.append(
            (
                f"load_lareqa('{name}') all languages",
                ours,
                f"bare json.loads {peer:.3f}s, ratio {ours / peer:.1f}x",
            )
        )
    ml = load_lareqa("mlqa-r")
    rows.append(("lareqa_pairs(mlqa-r)", best(lambda: lareqa_pairs(ml), a.repeat), ""))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for split in ("train", "dev", "test"):
            rows.append((f"afriqa_pairs('{split}')", best(lambda: afriqa_pairs(split), a.repeat), ""))
    rows.append(("mintaka_pairs() 9 languages, 144k pairs", best(mintaka_pairs, a.repeat), ""))
    rows.append(
        (
            "ntrex_pairs(9 paper languages), 144k pairs",
            best(lambda: ntrex_pairs("ar de en es hi ru th tr zh".split()), a.repeat),
            "",
        )
    )
    rows.append(("miracl_inventory() all topics+qrels", best(miracl_inventory, a.repeat), ""))
    for offline in (True, False):
        wall, out = fail_fast(offline)
        rows.append(
            (
                f"missing xquad-r, {'offline' if offline else 'online, source unreachable'}: whole process",
                wall,
                f"inside load_lareqa {out.split(' ')[0]}s: {' '.join(out.split(' ')[2:])[:110]}",
            )
        )
    w = max(len(r[0]) for r in rows)
    for name, t, note in rows:
        print(f"{name:<{w}}  {t:7.3f}s  {note}")


if __name__ == "__main__":
    main()
