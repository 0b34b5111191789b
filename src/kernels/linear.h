#pragma once
// Linear layer y = x W^T with W [out, in] kept in its checkpoint format.
// CPU reference: fp32 compute, weights dequantized row by row on the fly (weight-only
// quantization semantics; activations are never quantized).
#include <cstdint>

namespace nemotron::kernels {

// Storage format of a linear weight [out, in]:
//   Dense  BF16/F16/F32 `weight` [out, in].
//   FP8    F8_E4M3 `weight` [out, in]; W = fp8 * scale (per-tensor weight_scale).
//   NVFP4  U8 `weight` [out, in/2] (element 2j in the low nibble, 2j+1 in the high);
//          E4M3 block_scale [out, in/16]; W = e2m1 * block_scale * scale (weight_scale_2).
enum class WeightFormat { Dense, FP8, NVFP4 };
enum class ElementType { BF16, F16, F32 };  // element type of Dense weights

const char* weight_format_name(WeightFormat f);

struct LinearWeight {
  WeightFormat format = WeightFormat::Dense;
  ElementType dense_type = ElementType::BF16;
  int64_t out = 0, in = 0;
  const void* data = nullptr;            // weight bytes, row-major
  const uint8_t* block_scale = nullptr;  // NVFP4 only: E4M3 [out, in/16]
  float scale = 1.0f;                    // FP8 weight_scale or NVFP4 weight_scale_2

  // Bytes read to apply this weight once (weight + block scales).
  int64_t stored_bytes() const;
};

// Writes row `row` of W, dequantized to fp32, into out[in].
void dequantize_row(const LinearWeight& w, int64_t row, float* out);

// y[t, :] = x[t, :] W^T for t in [0, T). x [T, in], y [T, out], fp32. Multithreaded over rows.
void linear_cpu(const LinearWeight& w, const float* x, int64_t T, float* y);

// Dot product with 8 partial sums (deterministic for a given n).
float dot_f32(const float* a, const float* b, int64_t n);

}  // namespace nemotron::kernels
