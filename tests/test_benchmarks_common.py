"""The machine line every benchmark prints names the CPU's model and the
vector/matrix extensions its speed ratios depend on (BENCHMARKS.md)."""

import os

from benchmarks import common

_AVX512_EPYC = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16
processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16
"""


def test_names_the_model_and_the_extensions_it_has():
  assert (common.cpu_description(_AVX512_EPYC)
          == "AMD EPYC; avx2 fma avx512f avx512_bf16")
  xeon = ("model name\t: Intel(R) Xeon(R) Platinum\n"
          "flags\t\t: avx2 fma avx512f amx_bf16 amx_tile\n")
  assert (common.cpu_description(xeon)
          == "Intel(R) Xeon(R) Platinum; avx2 fma avx512f amx_tile amx_bf16")


def test_a_cpu_without_any_of_them_says_so():
  got = common.cpu_description("model name\t: Old CPU\nflags\t\t: fpu sse2\n")
  assert got == "Old CPU; none of " + " ".join(common._ISA_FLAGS)


def test_machine_line_on_this_machine():
  line = common.machine_line()
  assert " cores (" in line and "jax " in line
  if os.path.exists("/proc/cpuinfo"):  # Linux: the line carries the extensions
    with open("/proc/cpuinfo") as f:
      assert f"({common.cpu_description(f.read())})" in line
