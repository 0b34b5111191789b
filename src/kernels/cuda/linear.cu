// linear_cuda: argument checks and the choice between the decode GEMV and the prefill GEMM.
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/linear_internal.cuh"

namespace nemotron::kernels {

namespace {

bool uses_gemv(const LinearCudaArgs& a) {
  return a.path == LinearPath::Gemv || a.path == LinearPath::GemvWarpRow ||
         (a.path == LinearPath::Auto && a.T <= kLinearGemvMaxRows);
}

// Throws Error on bad arguments.
void check_args(const LinearCudaArgs& a) {
  using cuda::require;
  const LinearWeight& w = a.w;
  require(a.T >= 1, "linear_cuda: T must be >= 1 (got " + std::to_string(a.T) + ")");
  require(w.out >= 1 && w.in >= 1, "linear_cuda: empty weight");
  require(w.in % 32 == 0, "linear_cuda: in (" + std::to_string(w.in) + ") must be a multiple of 32");
  require(w.in < (int64_t{1} << 30) && w.out < (int64_t{1} << 30) && a.T < (int64_t{1} << 30) &&
              a.T * w.in < (int64_t{1} << 31) * 8,
          "linear_cuda: shape too large");
  require(w.format != WeightFormat::Dense || w.dense_type == ElementType::BF16,
          "linear_cuda: Dense weights must be BF16 (convert F16/F32 at load)");
  require(w.data && a.x && a.y, "linear_cuda: null pointer");
  require(w.format != WeightFormat::NVFP4 || w.block_scale, "linear_cuda: NVFP4 weight without block scales");
  require(cuda::aligned16(w.data) && cuda::aligned16(a.x), "linear_cuda: weight and x must be 16-byte aligned");
  const bool gemv = uses_gemv(a);
  require(!gemv || a.T <= kLinearGemvMaxRows,
          "linear_cuda: the GEMV path takes at most " + std::to_string(kLinearGemvMaxRows) + " rows");
  require(!a.relu2 || a.y_type == OutType::BF16 || gemv, "linear_cuda: relu2 with fp32 output needs the GEMV path");
  require(a.tiles_per_block >= 0 && a.tiles_per_block <= 4,
          "linear_cuda: tiles_per_block must be 0..4 (got " + std::to_string(a.tiles_per_block) + ")");
}

// A checked linear.
void launch(const LinearCudaArgs& a, cudaStream_t stream) {
  if (uses_gemv(a)) {
    cuda::launch_linear_gemv(a, stream);
  } else {
    cuda::launch_linear_gemm(a, stream);
  }
}

}  // namespace

void linear_cuda(const LinearCudaArgs& a, cudaStream_t stream) {
  check_args(a);
  launch(a, stream);
}

void linear_group_cuda(const LinearCudaArgs* parts, int n, cudaStream_t stream) {
  cuda::require(parts && n >= 1, "linear_group_cuda: no parts");
  bool gemv = true;
  for (int i = 0; i < n; ++i) {
    check_args(parts[i]);
    gemv = gemv && uses_gemv(parts[i]);
  }
  if (gemv && cuda::launch_linear_gemv_group(parts, n, stream)) return;
  for (int i = 0; i < n; ++i) launch(parts[i], stream);
}

}  // namespace nemotron::kernels
