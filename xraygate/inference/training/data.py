"""Training data from a directory in the layout of the public Kermany pediatric pneumonia set:
``DIR/NORMAL/*`` and ``DIR/PNEUMONIA/*`` (PNG/JPEG images or DICOM files; nested folders such as
``train/`` are searched too). Every file goes through the same preprocessing as at inference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from xraygate.core.errors import InferenceError
from xraygate.inference.manifest import InputSpec
from xraygate.inference.preprocess import preprocess, read_dataset

CLASSES = {"NORMAL": 0, "PNEUMONIA": 1}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def load_file(path: Path, spec: InputSpec) -> NDArray[np.float32]:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        try:
            with Image.open(path) as img:
                gray = img.convert("L").resize((spec.width, spec.height), Image.Resampling.BOX)
        except (UnidentifiedImageError, OSError) as exc:
            raise InferenceError(f"unreadable image {path.name}") from exc
        return (np.asarray(gray, dtype=np.float32) / 255.0)[..., np.newaxis]
    return preprocess(read_dataset(path.read_bytes()), spec)


def load_directory(
    root: Path, spec: InputSpec
) -> tuple[NDArray[np.float32], NDArray[np.int32], list[str]]:
    """Images, labels (1 = pneumonia) and a list of files skipped with the reason."""
    images, labels, skipped = [], [], []
    for class_dir in sorted(p for p in root.rglob("*") if p.is_dir() and p.name in CLASSES):
        for path in sorted(p for p in class_dir.iterdir() if p.is_file()):
            try:
                images.append(load_file(path, spec))
                labels.append(CLASSES[class_dir.name])
            except InferenceError as exc:
                skipped.append(f"{path}: {exc}")
    if not images or len(set(labels)) < 2:
        raise InferenceError(f"{root} needs images in both NORMAL/ and PNEUMONIA/ folders")
    return np.stack(images), np.asarray(labels, dtype=np.int32), skipped


def write_png_dataset(root: Path, images: NDArray[np.float32], labels: NDArray[np.int32]) -> None:
    """Write images as 8-bit PNGs into NORMAL/ and PNEUMONIA/ (the layout load_directory reads)."""
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    names = {v: k for k, v in CLASSES.items()}
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        pixels = (np.clip(image[..., 0], 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(root / names[int(label)] / f"{i:05d}.png")
