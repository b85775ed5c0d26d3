"""Hardware profiles: the peak rates and bandwidth a speed-of-light bound divides by.

A profile is either ``datasheet`` (NVIDIA's published peaks, below) or ``measured`` (what
`kb calibrate` reached on the GPU present, saved as JSON). Every profile carries a
``profile_id`` ("H200/datasheet", "H200/measured@2026-11-26") that scores record.

Units: rates in operations per second, bandwidth in bytes per second, sizes in bytes.
All tensor-core rates are DENSE: NVIDIA's datasheets quote "with sparsity" figures (2:4
structured sparsity) for tf32/bf16/fp16/fp8/int8/fp4; the dense rate is half of that.

Rate classes
  tensor cores: fp64, tf32, bf16 (= fp16), fp8, int8, fp4
  CUDA cores:   fp32, fp16 (packed half2/bfloat162 arithmetic), fp64
  sfu:          transcendental results per second (MUFU: ex2, lg2, rsqrt, rcp, sin, cos, tanh):
                16 per clock per SM on compute capability 8.0, 9.0 and 10.0 (CUDA C++
                Programming Guide, "Arithmetic Instructions", throughput table), times SMs
                times the boost clock.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from kernelbench.core.settings import DEFAULTS, ENVIRONMENT

T = 1e12  # tera
G = 1e9
MB = 1 << 20

TENSOR_CLASSES = ("fp64", "tf32", "bf16", "fp8", "int8", "fp4")
CUDA_CLASSES = ("fp32", "fp16", "fp64")

# A matrix class the GPU has no tensor-core path for runs, at best, at the rate of the next
# wider class its values are exactly representable in: e2m1 (fp4) values are exact in e4m3
# (fp8), and fp8 (e4m3, e5m2) values are exact in fp16/bf16.
TENSOR_FALLBACK = {"fp4": "fp8", "fp8": "bf16", "int8": "bf16", "tf32": "fp32_cuda"}

HARDWARE_NAMES = ("H100", "H200", "B200", "A100")


class ProfileError(ValueError):
    """A profile that does not exist or cannot be read."""


@dataclass(frozen=True)
class HardwareProfile:
    name: str                                   # H100 | H200 | B200 | A100
    kind: str                                   # datasheet | measured
    tensor: dict[str, float]                    # class -> dense FLOP/s
    cuda: dict[str, float]                      # class -> FLOP/s (an FMA counts 2)
    sfu: float                                  # transcendental results / s
    dram_bandwidth: float                       # bytes / s
    l2_bytes: int
    sm_count: int
    boost_clock_hz: float
    launch_floor_s: float                       # see model.py: added once to every bound
    date: str = ""                              # measured profiles: the day of calibration
    device_name: str = ""                       # what the driver called the GPU
    measured: tuple[str, ...] = ()              # fields a calibration measured (others: datasheet)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def profile_id(self) -> str:
        return f"{self.name}/{self.kind}" + (f"@{self.date}" if self.date else "")

    def tensor_rate(self, cls: str) -> float:
        """FLOP/s for matrix work of a class, following TENSOR_FALLBACK where the GPU lacks it."""
        while cls not in self.tensor:
            cls = TENSOR_FALLBACK[cls]
            if cls == "fp32_cuda":
                return self.cuda["fp32"]
        return self.tensor[cls]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["measured"] = list(self.measured)
        data["profile_id"] = self.profile_id
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "HardwareProfile":
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["measured"] = tuple(data.get("measured", ()))
        return cls(**data)


# ------------------------------------------------------------------------------ datasheets
# Sources (by name; each figure below cites one of them):
#   [H100-DS]  NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column).
#   [H100-WP]  NVIDIA H100 Tensor Core GPU Architecture whitepaper (GH100), table
#              "NVIDIA H100 SXM5 ... compared to A100": non-tensor FP16/BF16 133.8 TFLOPS,
#              50 MB L2, 132 SMs.
#   [H200-DS]  NVIDIA H200 Tensor Core GPU datasheet (H200 SXM column).
#   [B200-DS]  NVIDIA DGX B200 / HGX B200 datasheet (8-GPU totals, divided by 8 here).
#   [BW-TB]    NVIDIA Blackwell Architecture Technical Brief (148 SMs for B200).
#   [A100-DS]  NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM column).
#   [A100-WP]  NVIDIA A100 Tensor Core GPU Architecture whitepaper (non-tensor FP16 78 TFLOPS,
#              BF16 39 TFLOPS, 40 MB L2, 108 SMs, 1410 MHz boost).
#   [CUDA-PG]  CUDA C++ Programming Guide, arithmetic-instruction throughput table
#              (16 MUFU results / clock / SM for cc 8.0, 9.0, 10.0).
#   [LENT]     Read on this workplace's lent GPUs (.library/device/KINDS.md): H100 and H200
#              report 132 SMs; PyTorch reports 50 MB L2 on the H100 and 60 MB on the H200;
#              the SM clock read 1980 MHz under load.

def _sfu(sms: int, clock_hz: float) -> float:
    return 16 * sms * clock_hz  # [CUDA-PG]


# Launch floor (model.py explains its use). Datasheet profiles take 0.5 us: a kernel's
# grid launch, first DRAM round trip and completion take several hundred ns on Hopper and
# Blackwell, and the public leaderboard's fastest B200 entries (0.84 us for the M<=16 GEMM,
# 1.1 us for the 128-wide RMSNorm, see benchmarks/roofline_vs_published.md) bound it from
# above. A measured profile replaces it with the shortest event-timed empty kernel.
LAUNCH_FLOOR_S = 0.5e-6

_HOPPER_TENSOR = {             # dense = datasheet "with sparsity" / 2   [H100-DS] [H200-DS]
    "fp64": 67 * T,            # FP64 Tensor Core 67 TFLOPS (dense figure as printed)
    "tf32": 989 * T / 2,       # TF32 Tensor Core 989 TFLOPS*
    "bf16": 1979 * T / 2,      # BF16 / FP16 Tensor Core 1,979 TFLOPS*
    "fp8": 3958 * T / 2,       # FP8 Tensor Core 3,958 TFLOPS*
    "int8": 3958 * T / 2,      # INT8 Tensor Core 3,958 TOPS*
}
_HOPPER_CUDA = {
    "fp32": 67 * T,            # FP32 67 TFLOPS [H100-DS] [H200-DS]
    "fp16": 133.8 * T,         # non-tensor FP16/BF16 133.8 TFLOPS [H100-WP] (same GH100 die in H200)
    "fp64": 34 * T,            # FP64 34 TFLOPS [H100-DS] [H200-DS]
}

DATASHEETS: dict[str, HardwareProfile] = {
    "H100": HardwareProfile(
        name="H100", kind="datasheet", tensor=dict(_HOPPER_TENSOR), cuda=dict(_HOPPER_CUDA),
        sfu=_sfu(132, 1.98 * G),
        dram_bandwidth=3.35e12,            # 80 GB HBM3, 3.35 TB/s [H100-DS]
        l2_bytes=50 * MB,                  # [H100-WP], [LENT]
        sm_count=132,                      # [H100-WP]
        boost_clock_hz=1.98 * G,           # max SM clock 1980 MHz [LENT]
        launch_floor_s=LAUNCH_FLOOR_S,
        sources={"rates": "H100-DS (SXM), dense = sparse/2", "fp16 cuda, L2, SMs": "H100-WP",
                 "sfu": "CUDA-PG 16/clk/SM", "clock": "LENT"}),
    "H200": HardwareProfile(
        name="H200", kind="datasheet", tensor=dict(_HOPPER_TENSOR), cuda=dict(_HOPPER_CUDA),
        sfu=_sfu(132, 1.98 * G),
        dram_bandwidth=4.8e12,             # 141 GB HBM3e, 4.8 TB/s [H200-DS]
        l2_bytes=60 * MB,                  # not in the datasheet; PyTorch on the lent H200 [LENT]
        sm_count=132,                      # [LENT]
        boost_clock_hz=1.98 * G,           # [LENT]
        launch_floor_s=LAUNCH_FLOOR_S,
        sources={"rates": "H200-DS (SXM), dense = sparse/2", "fp16 cuda": "H100-WP (same die)",
                 "L2, SMs, clock": "LENT", "sfu": "CUDA-PG 16/clk/SM"}),
    "B200": HardwareProfile(
        name="B200", kind="datasheet",
        tensor={                           # HGX B200 8-GPU totals / 8, dense = sparse / 2 [B200-DS]
            "fp64": 296 * T / 8,           # FP64/FP64 Tensor Core 296 TFLOPS (dense)
            "tf32": 18e15 / 8 / 2,         # TF32 Tensor Core 18 PFLOPS*
            "bf16": 36e15 / 8 / 2,         # FP16/BF16 Tensor Core 36 PFLOPS*
            "fp8": 72e15 / 8 / 2,          # FP8/FP6 Tensor Core 72 PFLOPS*
            "int8": 72e15 / 8 / 2,         # INT8 Tensor Core 72 POPS*
            "fp4": 144e15 / 8 / 2,         # FP4 Tensor Core 144 PFLOPS*
        },
        cuda={
            # Not in the datasheet. 148 SMs x 128 FP32 lanes x 2 x 1.965 GHz = 74.4 TFLOPS;
            # we take 80 TFLOPS (a higher figure quoted for Blackwell GPUs at higher clocks)
            # so that the bound stays below any real B200.
            "fp32": 80 * T,
            "fp16": 160 * T,               # packed half2: 2x fp32 (estimate, as on Hopper)
            "fp64": 296 * T / 8,           # FP64 37 TFLOPS [B200-DS]
        },
        sfu=_sfu(148, 1.965 * G),
        dram_bandwidth=64e12 / 8,          # HBM3e 64 TB/s per 8 GPUs = 8 TB/s [B200-DS]
        l2_bytes=126 * MB,                 # device queries of B200 report 126 MB (not in the datasheet)
        sm_count=148,                      # [BW-TB]
        boost_clock_hz=1.965 * G,          # max SM clock reported for B200 (estimate)
        launch_floor_s=LAUNCH_FLOOR_S,
        sources={"rates": "B200-DS (HGX B200, /8 per GPU, dense = sparse/2)", "SMs": "BW-TB",
                 "fp32/fp16 cuda, L2, clock": "estimates, see comments", "sfu": "CUDA-PG 16/clk/SM"}),
    "A100": HardwareProfile(
        name="A100", kind="datasheet",
        tensor={                           # A100 80GB SXM [A100-DS]; no FP8 / FP4 tensor cores
            "fp64": 19.5 * T,              # FP64 Tensor Core 19.5 TFLOPS
            "tf32": 156 * T,               # TF32 156 TFLOPS (312* with sparsity)
            "bf16": 312 * T,               # BF16/FP16 312 TFLOPS (624*)
            "int8": 624 * T,               # INT8 624 TOPS (1248*)
        },
        cuda={
            "fp32": 19.5 * T,              # [A100-DS]
            "fp16": 78 * T,                # non-tensor FP16 78 TFLOPS (BF16 39) [A100-WP]; max taken
            "fp64": 9.7 * T,               # [A100-DS]
        },
        sfu=_sfu(108, 1.41 * G),
        dram_bandwidth=2039e9,             # 2,039 GB/s (80GB SXM) [A100-DS]
        l2_bytes=40 * MB,                  # [A100-WP]
        sm_count=108,                      # [A100-WP]
        boost_clock_hz=1.41 * G,           # [A100-WP]
        launch_floor_s=LAUNCH_FLOOR_S,
        sources={"rates": "A100-DS (80GB SXM)", "fp16 cuda, L2, SMs, clock": "A100-WP",
                 "sfu": "CUDA-PG 16/clk/SM"}),
}


# ------------------------------------------------------------------------------ names, files

def canonical_name(name: str) -> str:
    """'H200', 'h200', 'NVIDIA H200', 'NVIDIA H100 80GB HBM3', 'NVIDIA A100-SXM4-80GB' -> short name."""
    for short in HARDWARE_NAMES:
        if re.search(rf"\b{short}\b", name.upper().replace("-", " ")):
            return short
    raise ProfileError(f"unknown hardware {name!r}; known: {', '.join(HARDWARE_NAMES)}")


def measured_path(name: str, profile_dir: Path = DEFAULTS.profile_dir) -> Path:
    return Path(profile_dir) / f"{canonical_name(name)}.json"


def load_profile(hardware: str = "H200", kind: str = "datasheet",
                 profile_dir: Path = DEFAULTS.profile_dir) -> HardwareProfile:
    """The datasheet profile of `hardware`, or the measured one `kb calibrate` saved under profile_dir."""
    if isinstance(hardware, HardwareProfile):
        return hardware
    name = canonical_name(hardware)
    if kind == "datasheet":
        return DATASHEETS[name]
    if kind != "measured":
        raise ProfileError(f"profile kind must be datasheet or measured, not {kind!r}")
    path = measured_path(name, profile_dir)
    if not path.is_file():
        raise ProfileError(f"no measured profile for {name} at {path}: run `kb calibrate` on that GPU "
                           f"(or set --cache-dir / {ENVIRONMENT['cache_dir']})")
    try:
        return HardwareProfile.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise ProfileError(f"{path}: not a hardware profile ({exc})") from None


def save_profile(profile: HardwareProfile, path: str | os.PathLike | None = None,
                 profile_dir: Path = DEFAULTS.profile_dir) -> Path:
    path = Path(path) if path else measured_path(profile.name, profile_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile.to_dict(), indent=2) + "\n")
    return path


def measured_from(name: str, values: dict, device_name: str = "") -> HardwareProfile:
    """A measured profile: the datasheet profile with the calibrated fields replaced.

    `values` holds any of: dram_bandwidth, launch_floor_s, sfu, tensor.<class>, cuda.<class>.
    Fields not measured keep their datasheet figure, and `measured` lists those that were.
    """
    base = DATASHEETS[canonical_name(name)]
    tensor, cuda, top = dict(base.tensor), dict(base.cuda), {}
    for key, value in values.items():
        group, _, cls = key.partition(".")
        if group == "tensor":
            tensor[cls] = value
        elif group == "cuda":
            cuda[cls] = value
        else:
            top[key] = value
    return replace(base, kind="measured", tensor=tensor, cuda=cuda, date=datetime.date.today().isoformat(),
                   device_name=device_name, measured=tuple(sorted(values)), **top)
