# Sourced by tools/bench-*: the environment that makes both sides of a
# benchmark run one instruction-set level, so an AVX2-only machine can be
# imitated on an AVX-512 one (--isa avx2). Ours: AP_CPU_ISA (our kernels);
# PyTorch: ATEN_CPU_CAPABILITY (ATen's kernels) and ONEDNN_MAX_CPU_ISA (its
# convolutions); both: OPENBLAS_CORETYPE (OpenBLAS's GEMM, used by our linear
# and by Debian's torch). --isa best (the default) sets nothing.
#   isa_env ISA  ->  prints "VAR=value ..." for env(1)
isa_env() {
  case "$1" in
    best) echo "" ;;
    avx512) echo "AP_CPU_ISA=avx512 ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=AVX512_CORE OPENBLAS_CORETYPE=SkylakeX" ;;
    avx2) echo "AP_CPU_ISA=avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell" ;;
    generic) echo "AP_CPU_ISA=generic ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 OPENBLAS_CORETYPE=Nehalem" ;;
    *) echo "isa-env: expected --isa best|avx512|avx2|generic, found \"$1\"" >&2; return 2 ;;
  esac
}
