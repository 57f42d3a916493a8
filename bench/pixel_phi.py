"""Pixel PHI evaluation: burned-in text corpus (tests/anonymizer/pixel_corpus.py) through the
header de-identification and the pixel step, read back with OCR.

Prints: images with planted text OCR reads before de-identification; of those, how many are
exported with no planted string readable, held, or leaked; and on clean images (no text, or only
allow-listed markers) how many are blanked or held beyond the markers.

    .venv/bin/python bench/pixel_phi.py [--text 200] [--clean 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.anonymizer.pixel_corpus import (
    Outcome,
    Sample,
    clean_sample,
    figures,
    run_sample,
    text_sample,
)
from xraygate.anonymizer.engine import DeidConfig, Deidentifier
from xraygate.anonymizer.pixel_phi import CheckedResult, PixelPhi
from xraygate.anonymizer.profile import parse_options
from xraygate.anonymizer.text_finder import TextFinder

_ENGINE = Deidentifier(DeidConfig(parse_options([]), b"bench-secret"))
_STEP = PixelPhi(TextFinder())


def _deidentify(data: bytes) -> CheckedResult:
    return _STEP.check(_ENGINE.deidentify_bytes(data))


def _one(job: tuple[str, int, int]) -> tuple[Outcome, Sample]:
    kind, seed, max_side = job
    sample = (text_sample if kind == "text" else clean_sample)(seed, max_side=max_side)
    return run_sample(sample, _deidentify), sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--text", type=int, default=200)
    parser.add_argument("--clean", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--max-side", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    jobs = [("text", args.seed + i, args.max_side) for i in range(args.text)]
    jobs += [("clean", args.seed + 500_000 + i, args.max_side) for i in range(args.clean)]
    start = time.perf_counter()
    with Pool(args.workers) as pool:
        done = []
        for n, item in enumerate(pool.imap(_one, jobs), 1):
            done.append(item)
            if n % 20 == 0:
                print(f"... {n}/{len(jobs)}", file=sys.stderr, flush=True)
    outcomes = [o for o, _ in done]
    samples = [s for _, s in done]
    for outcome, sample in done:
        bad = (
            outcome.after or outcome.action == "held" or (outcome.clean and outcome.beyond_markers)
        )
        if args.verbose or bad:
            print(
                f"{outcome.name:24s} {outcome.action:8s} before={outcome.before} "
                f"after={outcome.after} {[p.text for p in sample.planted]} "
                f"{[(p.size, p.contrast) for p in sample.planted]}"
            )
    result = figures(outcomes, samples)
    print("\n".join(result.lines()))
    text_cpu = [o.cpu for o in outcomes if not o.clean]
    clean_cpu = [o.cpu for o in outcomes if o.clean]
    print(
        f"header + pixel step, CPU s/image (Tesseract included): "
        f"{sum(text_cpu) / max(len(text_cpu), 1):.2f} with text, "
        f"{sum(clean_cpu) / max(len(clean_cpu), 1):.2f} clean; wall "
        f"{time.perf_counter() - start:.0f} s for the run ({args.workers} workers, with the "
        "OCR evaluation)"
    )


if __name__ == "__main__":
    main()
