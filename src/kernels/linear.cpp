#include "kernels/linear.h"

#include <vector>

#include "kernels/numeric.h"
#include "util/parallel.h"

namespace nemotron::kernels {

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::Dense: return "BF16";
    case WeightFormat::FP8: return "FP8";
    case WeightFormat::NVFP4: return "NVFP4";
  }
  return "?";
}

int64_t LinearWeight::stored_bytes() const {
  switch (format) {
    case WeightFormat::Dense: return out * in * (dense_type == ElementType::F32 ? 4 : 2);
    case WeightFormat::FP8: return out * in;
    case WeightFormat::NVFP4: return out * in / 2 + out * in / 16;
  }
  return 0;
}

void dequantize_row(const LinearWeight& w, int64_t row, float* out) {
  const int64_t in = w.in;
  switch (w.format) {
    case WeightFormat::Dense: {
      if (w.dense_type == ElementType::F32) {
        const float* p = static_cast<const float*>(w.data) + row * in;
        for (int64_t i = 0; i < in; ++i) out[i] = p[i];
      } else {
        const uint16_t* p = static_cast<const uint16_t*>(w.data) + row * in;
        if (w.dense_type == ElementType::BF16)
          for (int64_t i = 0; i < in; ++i) out[i] = bf16_to_float(p[i]);
        else
          for (int64_t i = 0; i < in; ++i) out[i] = f16_to_float(p[i]);
      }
      return;
    }
    case WeightFormat::FP8: {
      const uint8_t* p = static_cast<const uint8_t*>(w.data) + row * in;
      for (int64_t i = 0; i < in; ++i) out[i] = e4m3_to_float(p[i]) * w.scale;
      return;
    }
    case WeightFormat::NVFP4: {
      const uint8_t* p = static_cast<const uint8_t*>(w.data) + row * (in / 2);
      const uint8_t* s = w.block_scale + row * (in / 16);
      for (int64_t b = 0; b < in / 16; ++b) {
        // Same operation order as the reference: (e2m1 * block scale) * global scale.
        const float bs = e4m3_to_float(s[b]);
        for (int64_t j = 0; j < 8; ++j) {
          const uint8_t byte = p[b * 8 + j];
          out[b * 16 + 2 * j] = e2m1_to_float(byte & 0xF) * bs * w.scale;
          out[b * 16 + 2 * j + 1] = e2m1_to_float(byte >> 4) * bs * w.scale;
        }
      }
      return;
    }
  }
}

float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

void linear_cpu(const LinearWeight& w, const float* x, int64_t T, float* y) {
  const int64_t in = w.in, out = w.out;
  parallel_for(static_cast<std::size_t>(out), [&](std::size_t r0, std::size_t r1) {
    std::vector<float> row(static_cast<std::size_t>(in));
    for (std::size_t r = r0; r < r1; ++r) {
      dequantize_row(w, static_cast<int64_t>(r), row.data());
      for (int64_t t = 0; t < T; ++t) y[t * out + static_cast<int64_t>(r)] = dot_f32(row.data(), x + t * in, in);
    }
  }, 16);
}

}  // namespace nemotron::kernels
