"""Generate ACTIVITY_TRAIN.ts and ACTIVITY_TEST.ts: a small multivariate time-series archive in the
sktime/aeon .ts format, shaped like the accelerometer archives papers use (UCI HAR, BasicMotions).

Three channels (accelerometer x, y, z), 64 samples at 25 Hz (2.56 s), four activities:
  standing  gravity on z, sensor noise and slow sway
  walking   ~1.8 Hz gait: vertical bounce on z, sway on x
  running   ~2.8 Hz, larger impacts on z, stronger sway
  jumping   ~1 Hz bursts: large z impulses, little sway
Amplitude, cadence, phase, orientation offset and noise vary per series, so the classes overlap a
little. Seeded: running it again writes the same bytes.

    python data/make_archive.py          # writes data/ACTIVITY_TRAIN.ts and data/ACTIVITY_TEST.ts
"""
from __future__ import annotations

import math
import random
from pathlib import Path

CLASSES = ("standing", "walking", "running", "jumping")
LENGTH, RATE = 64, 25.0


def series(rng: random.Random, label: str) -> list[list[float]]:
    f = {"standing": rng.uniform(0.2, 0.6), "walking": rng.uniform(1.4, 2.4), "running": rng.uniform(2.0, 3.2),
         "jumping": rng.uniform(0.8, 1.4)}[label]
    amp = {"standing": rng.uniform(0.0, 0.08), "walking": rng.uniform(0.15, 0.5), "running": rng.uniform(0.35, 0.9),
           "jumping": rng.uniform(0.5, 1.6)}[label]
    sway = {"standing": 0.0, "walking": 0.15, "running": 0.3, "jumping": 0.05}[label] * rng.uniform(0.7, 1.3)
    phase = rng.uniform(0, 2 * math.pi)
    tilt = [rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15)]
    noise = rng.uniform(0.08, 0.25)
    x, y, z = [], [], []
    for i in range(LENGTH):
        t = i / RATE
        a = 2 * math.pi * f * t + phase
        bounce = amp * (max(0.0, math.sin(a)) ** 3 if label == "jumping" else math.sin(a))
        x.append(tilt[0] + sway * math.sin(a / 2) + rng.gauss(0, noise))
        y.append(tilt[1] + 0.5 * sway * math.cos(a / 2) + rng.gauss(0, noise))
        z.append(1.0 + bounce + rng.gauss(0, noise))
    return [x, y, z]


def write_ts(path: Path, cases: list[tuple[list[list[float]], str]]) -> None:
    lines = ["# doit-tinyml example archive (synthetic accelerometer activities; see make_archive.py)",
             "@problemName Activity", "@timeStamps false", "@missing false", "@univariate false",
             "@dimensions 3", "@equalLength true", f"@seriesLength {LENGTH}",
             "@classLabel true " + " ".join(CLASSES), "@data"]
    for dims, label in cases:
        lines.append(":".join(",".join(f"{v:.4f}" for v in d) for d in dims) + f":{label}")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    rng = random.Random(2024)
    here = Path(__file__).resolve().parent
    for split, n in (("TRAIN", 360), ("TEST", 120)):
        cases = [(series(rng, CLASSES[i % 4]), CLASSES[i % 4]) for i in range(n)]
        rng.shuffle(cases)
        write_ts(here / f"ACTIVITY_{split}.ts", cases)


if __name__ == "__main__":
    main()
