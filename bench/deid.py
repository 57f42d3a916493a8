"""De-identification throughput and leaks: xraygate vs the ``deid`` and ``dicognito`` packages.

Corpora (built in a temp dir, each copy with its own UIDs so no tool can cache a mapping):
- ``large``: 200 copies of RG1_UNCR.dcm (real chest CR, 7.2 MB each);
- ``small``: 2,000 small files from the PHI test corpus (64x64, PHI everywhere).
Each tool reads every file from disk and writes its output file; the page cache is warmed
first, dirty pages are synced between runs, and each figure is the best of ``--rounds`` rounds
run in rotated tool order.
Leaks: planted PHI values each tool leaves in its outputs of the PHI corpus (tests/anonymizer).
``xraygate+ocr`` is what leaves the site (export, ``xraygate deid``): the header profile plus the
pixel PHI step (Tesseract reads every image); it runs on the ``large`` CR corpus only, and the
ratio of its files/s to header-only xraygate is printed.

    .venv/bin/python bench/deid.py [--large 200] [--small 2000]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file

# this script is named like the ``deid`` package: keep its folder off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.anonymizer.corpus import PHI, leaks, phi_dataset, to_bytes  # noqa: E402
from xraygate.anonymizer.engine import DeidConfig, Deidentifier  # noqa: E402
from xraygate.anonymizer.profile import parse_options  # noqa: E402

Tool = Callable[[list[Path], Path], None]
OCR_ONLY_LARGE = frozenset({"xraygate+ocr"})


def build_large(folder: Path, count: int) -> list[Path]:
    src = dcmread(get_testdata_file("RG1_UNCR.dcm"))
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        src.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{i}"
        src.file_meta.MediaStorageSOPInstanceUID = src.SOPInstanceUID
        src.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.78.{i // 4}"
        path = folder / f"rg1_{i}.dcm"
        src.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def build_small(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = folder / f"phi_{i}.dcm"
        path.write_bytes(to_bytes(phi_dataset(i, implicit=i % 2 == 1)))
        paths.append(path)
    return paths


def xraygate_tool() -> Tool:
    engine = Deidentifier(DeidConfig(parse_options([]), b"bench-secret"))

    def run(paths: list[Path], out: Path) -> None:
        for path in paths:
            engine.deidentify_file(path).write(out / path.name)

    return run


def xraygate_ocr_tool() -> Tool:
    from xraygate.anonymizer.pixel_phi import CheckedDeidentifier, PixelPhi
    from xraygate.anonymizer.text_finder import TextFinder

    engine = Deidentifier(DeidConfig(parse_options([]), b"bench-secret"))
    checked = CheckedDeidentifier(engine, PixelPhi(TextFinder()))

    def run(paths: list[Path], out: Path) -> None:
        for path in paths:
            checked.deidentify_file(path).write(out / path.name)

    return run


def dicognito_tool() -> Tool:
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer(seed="bench-secret")

    def run(paths: list[Path], out: Path) -> None:
        for path in paths:
            ds = dcmread(path)
            anonymizer.anonymize(ds)
            ds.save_as(out / path.name)

    return run


def deid_tool() -> Tool:
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers

    recipe = DeidRecipe()  # the package's default recipe (deid.dicom)

    def run(paths: list[Path], out: Path) -> None:
        replace_identifiers(
            dicom_files=[str(p) for p in paths],
            deid=recipe,
            save=True,
            output_folder=str(out),
            overwrite=True,
            remove_private=True,
        )

    return run


TOOLS: dict[str, Callable[[], Tool]] = {
    "xraygate": xraygate_tool,
    "xraygate+ocr": xraygate_ocr_tool,
    "dicognito": dicognito_tool,
    "deid": deid_tool,
}


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(tool: Tool, paths: list[Path], out: Path) -> tuple[float, float]:
    """Wall and CPU seconds (Tesseract subprocesses included) of one run of ``tool``."""
    for path in paths:  # warm the page cache equally for every tool
        path.read_bytes()
    out.mkdir(parents=True, exist_ok=True)
    start, cpu = time.perf_counter(), _cpu()
    tool(paths, out)
    return time.perf_counter() - start, _cpu() - cpu


def count_leaks(tool: Tool, work: Path) -> tuple[int, list[str]]:
    corpus = work / "phi"
    corpus.mkdir()
    paths = []
    for i, burned in enumerate([None, None, "NO"]):
        path = corpus / f"leak_{i}.dcm"
        path.write_bytes(to_bytes(phi_dataset(i, implicit=i == 1, burned_in=burned)))
        paths.append(path)
    out = work / "phi-out"
    out.mkdir()
    tool(paths, out)
    found: set[str] = set()
    total = 0
    for path in sorted(out.rglob("*.dcm")):
        keys = leaks(path.read_bytes())
        total += len(keys)
        found.update(keys)
    return total, sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", type=int, default=200)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--rounds", type=int, default=3, help="best of N, order rotated")
    parser.add_argument(
        "--dir",
        default=None,
        help="work folder for corpora and outputs (default: system temp, i.e. disk; "
        "/dev/shm measures the tools without the disk's write bandwidth)",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="xraygate-bench-deid-", dir=args.dir))
    print(f"work folder: {work}")
    try:
        corpora = {
            "large": build_large(work / "large", args.large),
            "small": build_small(work / "small", args.small),
        }
        sizes = {name: sum(p.stat().st_size for p in paths) for name, paths in corpora.items()}
        results: dict[tuple[str, str], float] = {}
        cpu: dict[tuple[str, str], float] = {}
        names = args.tools.split(",")
        os.sync()  # the corpora were just written: no tool may pay for their write-back
        for rnd in range(args.rounds):  # rotate the order; keep each tool's best round
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            for name in order:
                for corpus, paths in corpora.items():
                    if name in OCR_ONLY_LARGE and (corpus != "large" or rnd > 0):
                        continue  # OCR: one round on the CR corpus (minutes per round)
                    out = work / f"out-{name}-{corpus}"
                    seconds, used = timed(TOOLS[name](), paths, out)
                    key = (name, corpus)
                    results[key] = min(seconds, results.get(key, seconds))
                    cpu[key] = min(used, cpu.get(key, used))
                    shutil.rmtree(out)
                    os.sync()
        for name in names:
            for corpus, paths in corpora.items():
                if (name, corpus) not in results:
                    continue
                seconds, mb = results[(name, corpus)], sizes[corpus] / 1e6
                print(
                    f"{name:10s} {corpus:5s} {len(paths):5d} files {mb:8.1f} MB "
                    f"{seconds:7.2f} s  {len(paths) / seconds:8.1f} files/s "
                    f"{mb / seconds:8.1f} MB/s",
                    flush=True,
                )
        print()
        for corpus in corpora:
            ours = results[("xraygate", corpus)]
            for name in names:
                if name != "xraygate" and (name, corpus) in results:
                    print(f"{corpus:5s}: xraygate is {results[(name, corpus)] / ours:5.1f}x {name}")
        if ("xraygate+ocr", "large") in results:
            ocr = results[("xraygate+ocr", "large")]
            print(
                f"large: pixel PHI step (OCR): {len(corpora['large']) / ocr:.2f} files/s with it, "
                f"{len(corpora['large']) / results[('xraygate', 'large')]:.1f} without: "
                f"{ocr / results[('xraygate', 'large')]:.0f}x slower"
            )
            count = len(corpora["large"])
            with_ocr, header = cpu[("xraygate+ocr", "large")], cpu[("xraygate", "large")]
            print(
                f"large: CPU s/image {with_ocr / count:.3f} with the pixel PHI step, "
                f"{header / count:.3f} without: the step costs {(with_ocr - header) / count:.3f}"
            )
        print(f"\nleaks on the PHI corpus (3 files, {len(PHI)} planted values each):")
        for name in [n for n in names if n not in OCR_ONLY_LARGE]:
            sub = work / f"leaks-{name}"
            sub.mkdir()
            total, keys = count_leaks(TOOLS[name](), sub)
            print(f"{name:10s} {total:3d} leaked values  {', '.join(keys) or '-'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    io.DEFAULT_BUFFER_SIZE = max(io.DEFAULT_BUFFER_SIZE, 1 << 16)
    main()
