// Tensor-core paged attention for decode (paged_attention_cuda with tensor_cores; API and cache
// layout: attention_cuda.h). Same grid, split partition and partials as the CUDA-core kernel of
// attention.cu, whose merge_kernel combines the splits.
//
// decode_tc_kernel: block (query row t, kv head, chunk of HG <= 16 q heads, split), 4 warps.
//   The block's q heads are the 16 rows of m16n8k16 mmas (rows past HG are zeros): with GQA
//   (Nano, Super: 16 q heads per kv head) one K/V row read from memory serves 16 heads, which
//   on the CUDA cores made long-context decode compute-bound (fp32 FMAs: ~18% of the copy
//   bandwidth at 1M positions on an H200, bench/RESULTS.md).
//   The split's positions [s0, s1) are cut into tiles of 16 keys; warp w takes tiles w, w + 4,
//   ... through its own 3-stage cp.async ring (no block barrier in the walk; FP8 rows are
//   converted exactly to BF16 in the warp's own tile), and keeps its own online softmax:
//     scores  S = Q K^T (16 heads x 16 keys), BF16 in, fp32 out; keys >= s1 masked; log2 domain
//             (scale * log2(e) * k_scale)
//     softmax running max m and per-lane partial sums l per head (the four lanes of a row)
//     PV      O = O * 2^(m_old - m_new) + P V, P rounded to BF16 (the A operand from the score
//             registers), V fragments by ldmatrix.trans
//   FP8 K/V take one of two paths: converted exactly to BF16 in the warp's own tile (above), or
//   (KvPath::Fp8Direct, the default; NEMOTRON_DECODE_FP8=tiles for the other) converted in registers into
//   the B operands of f16 mmas, with Q in f16 and P in f16 (attention_mma.cuh: the d
//   permutations that make a lane's bytes contiguous; O is written back unpermuted).
//   Then the four warps' (m, l, O) are merged through shared memory (in warp order) into the
//   block's result: O / l * v_scale as BF16 (one split), or the split's partial (O * v_scale,
//   m, l) for merge_kernel. A page id outside [0, num_pages) flags the block: NaN rows (or l =
//   NaN in the partial), never an out-of-bounds read; a bad row (sequence or position out of
//   range) is NaN as in the CUDA-core kernel.
#include <cuda_bf16.h>

#include <algorithm>
#include <string>

#include "kernels/cuda/attention_args.cuh"
#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/device_limits.cuh"

namespace nemotron::kernels::cuda {
namespace {

constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kKeys = 16;   // keys per warp tile
constexpr int kStages = 3;  // cp.async ring depth per warp
constexpr int kRows = 16;   // q heads per block as mma rows
constexpr int64_t kStaticSmemBound = 1024;  // the kernel's static shared memory (m_w, l_w, bad_s: 516 bytes)

// How a block reads K and V: BF16 rows; E4M3 rows converted to BF16 tiles; E4M3 rows straight
// into f16 mmas.
enum class KvPath { Bf16, Fp8ViaBf16, Fp8Direct };

// Shared memory (bytes): q rows [16][S] BF16, then per warp its ring (kStages x (K, V) x 16 rows)
// and, for Fp8ViaBf16, its converted BF16 K and V tiles; after the walk the rings hold the
// warps' O rows for the merge ([warps][16][D + 4] fp32).
template <int D, KvPath kPath>
struct DecodeLayout {
  static constexpr bool kFp8 = kPath != KvPath::Bf16, kDirect = kPath == KvPath::Fp8Direct;
  static constexpr int S = D + 8;                  // BF16 row stride (elements): 16-byte padding, no bank conflicts
  static constexpr int kEsz = kFp8 ? 1 : 2;        // stored bytes per K or V element
  static constexpr int CH = D * kEsz / 16;         // 16-byte chunks per stored row: 2 to 16, divides 32
  static_assert(CH >= 2 && CH <= 16 && 32 % CH == 0, "a lane's keys of a tile step by 32 / CH");
  // Ring row stride (bytes). Direct: D + 16, so that the 8 lanes of a 16-byte load phase
  // (two key rows, or four, 32 / 16 bytes apart) hit distinct banks.
  static constexpr int RS = kDirect ? D + 16 : kFp8 ? D : 2 * S;
  static constexpr int kStage = 2 * kKeys * RS;    // one stage: K rows, then V rows
  static constexpr int kConv = kFp8 && !kDirect ? 2 * kKeys * S * 2 : 0;
  static constexpr int kWarp = kStages * kStage + kConv;
  static constexpr int kQ = kRows * S * 2;
  static constexpr int OS = D + 4;                 // merge rows (fp32)
  static constexpr int kMerge = kWarps * kRows * OS * 4;
  static constexpr std::size_t bytes() {
    return static_cast<std::size_t>(kQ) + static_cast<std::size_t>(std::max(kWarps * kWarp, kMerge));
  }
};

template <int D, KvPath kPath>
__global__ void __launch_bounds__(kThreads, 2) decode_tc_kernel(const SplitParams p) {
  pdl_wait();
  pdl_trigger();
  using L = DecodeLayout<D, kPath>;
  constexpr int S = L::S, KS = D / 16, DT = D / 8, C8 = D / 8;
  extern __shared__ uint4 smem_raw[];
  __shared__ float m_w[kWarps][kRows], l_w[kWarps][kRows];
  __shared__ int bad_s;
  uint16_t* q_s = reinterpret_cast<uint16_t*>(smem_raw);
  char* rings = reinterpret_cast<char*>(smem_raw) + L::kQ;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, c = lane & 3;
  const SplitBlock blk = split_block(p);
  if (split_block_done(p, blk)) return;
  const int64_t t = blk.t;
  const int kvh = blk.kvh, nh = blk.nh, qh0 = blk.qh0, split = blk.split, seq = blk.seq;
  const int s0 = blk.s0, s1 = blk.s1;
  uint16_t* out_row = p.out + (t * p.q_heads + qh0) * D;

  if (tid == 0) bad_s = 0;
  for (int i = tid; i < kRows * C8; i += kThreads) {  // rows past nh: zeros
    const int h = i / C8, ch = i % C8;
    uint4 x = make_uint4(0, 0, 0, 0);
    if (h < nh) x = *reinterpret_cast<const uint4*>(p.q + (t * p.q_heads + qh0 + h) * D + ch * 8);
    *reinterpret_cast<uint4*>(q_s + h * S + ch * 8) = x;
  }
  __syncthreads();
  uint32_t qa[KS][4];
  if constexpr (L::kDirect)
    load_a_fragments_f16_permuted(qa, q_s, S, g, c);
  else
    load_a_fragments(qa, q_s + g * S + 2 * c, S);

  // This warp's tiles: w, w + 4, ... of the split's 16-key tiles.
  const int tiles = (s1 - s0 + kKeys - 1) / kKeys;
  const int mine = tiles > warp ? (tiles - warp + kWarps - 1) / kWarps : 0;
  char* ring = rings + warp * L::kWarp;
  uint16_t* kc_s = reinterpret_cast<uint16_t*>(ring + kStages * L::kStage);  // FP8: converted tiles
  uint16_t* vc_s = kc_s + kKeys * S;
  const int32_t* bt = p.block_tables + static_cast<int64_t>(seq) * p.max_pages;
  // cp.async of the warp's tile `it` into stage `st`; keys past s1 and pages outside the cache
  // are zero-filled (the latter flag the block NaN).
  auto issue = [&](int it, int st) {
    char* kd = ring + st * L::kStage;
    char* vd = kd + kKeys * L::RS;
    const int j0 = s0 + kKeys * (warp + kWarps * it);
    // Lane: chunk ch of keys key0, key0 + kStep, ... (kStep = 32 / CH lanes share a key row).
    constexpr int kStep = 32 / L::CH;
    const int ch = lane % L::CH, key0 = lane / L::CH;
    cp_async_kv_keys<kKeys / kStep>(p, bt, j0 + key0, kStep, s1, kvh, D * L::kEsz, ch, kd + key0 * L::RS + ch * 16,
                                    vd + key0 * L::RS + ch * 16, kStep * L::RS, &bad_s);
  };

  const float sscale = p.score_scale * p.k_scale;
  float o[DT][4];
#pragma unroll
  for (int i = 0; i < DT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.0f, l_hi = 0.0f;

#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    if (st < mine) issue(st, st);
    cp_async_commit();
  }
  for (int it = 0; it < mine; ++it) {
    if (it + kStages - 1 < mine) issue(it + kStages - 1, (it + kStages - 1) % kStages);
    cp_async_commit();  // empty near the end: the wait count stays uniform
    cp_async_wait<kStages - 1>();
    __syncwarp();
    const char* kr = ring + (it % kStages) * L::kStage;
    // The BF16 K and V tiles the bf16 mmas read (unused on the direct path).
    const uint16_t* k_s = reinterpret_cast<const uint16_t*>(kr);
    const uint16_t* v_s = k_s + kKeys * S;
    if constexpr (L::kFp8 && !L::kDirect) {
      e4m3_kv_to_bf16<D>(kr, kr + kKeys * L::RS, L::RS, kKeys, kc_s, vc_s, S, lane, 32);
      __syncwarp();
      k_s = kc_s;
      v_s = vc_s;
    }
    const int j0 = s0 + kKeys * (warp + kWarps * it);

    // S = Q K^T: 16 heads x 16 keys (two n-tiles of 8 keys).
    float s[2][4];
    if constexpr (L::kDirect)
      scores_tile_e4m3(s, qa, kr, L::RS, g, c);
    else
      scores_tile(s, qa, k_s, S, g, c);
    // Mask keys past s1, scale (log2 domain); softmax over the tile; O += P V.
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int key = j0 + nt * 8 + 2 * c + (i & 1);
        s[nt][i] = key < s1 ? s[nt][i] * sscale : -INFINITY;
      }
    online_softmax_tile(s, m_lo, m_hi, l_lo, l_hi, o);  // every tile has a key before s1
    if constexpr (L::kDirect)
      pv_tile_e4m3(o, s, kr + kKeys * L::RS, L::RS, g, c);
    else
      pv_kstep(o, s, 0, v_s, S, lane);
    __syncwarp();  // the stage (and the converted tiles) are free for the next issue
  }
  cp_async_wait<0>();
#pragma unroll
  for (int o2 = 1; o2 <= 2; o2 <<= 1) {
    l_lo += __shfl_xor_sync(0xFFFFFFFFu, l_lo, o2);
    l_hi += __shfl_xor_sync(0xFFFFFFFFu, l_hi, o2);
  }

  // Merge the warps: each writes its (m, l) per head and its O rows over the (now idle) rings.
  __syncthreads();
  float* o_s = reinterpret_cast<float*>(rings);
  constexpr int OS = L::OS;
  if (c == 0) {
    m_w[warp][g] = m_lo;
    m_w[warp][g + 8] = m_hi;
    l_w[warp][g] = l_lo;
    l_w[warp][g + 8] = l_hi;
  }
  float* ow = o_s + warp * kRows * OS;
#pragma unroll
  for (int dt = 0; dt < DT; ++dt) {
    if constexpr (L::kDirect) {  // columns n = 2c, 2c + 1 of n-tile dt are d = n DT + dt
      const int d0 = 2 * c * DT + dt;
      ow[g * OS + d0] = o[dt][0];
      ow[g * OS + d0 + DT] = o[dt][1];
      ow[(g + 8) * OS + d0] = o[dt][2];
      ow[(g + 8) * OS + d0 + DT] = o[dt][3];
    } else {
      const int col = dt * 8 + 2 * c;
      *reinterpret_cast<float2*>(ow + g * OS + col) = make_float2(o[dt][0], o[dt][1]);
      *reinterpret_cast<float2*>(ow + (g + 8) * OS + col) = make_float2(o[dt][2], o[dt][3]);
    }
  }
  __syncthreads();
  const bool bad = bad_s != 0;
  for (int i = tid; i < nh * (D / 2); i += kThreads) {
    const int h = i / (D / 2), d = 2 * (i % (D / 2));
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, m_w[w][h]);  // finite: warp 0 saw the split's first tile
    float Lsum = 0.0f, a0 = 0.0f, a1 = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float e = m_w[w][h] == -INFINITY ? 0.0f : exp2f(m_w[w][h] - M);  // a warp without tiles adds nothing
      Lsum += l_w[w][h] * e;
      const float2 x = *reinterpret_cast<const float2*>(o_s + (w * kRows + h) * OS + d);
      a0 += x.x * e;
      a1 += x.y * e;
    }
    if (p.splits == 1) {
      const float inv = p.v_scale / Lsum;
      *reinterpret_cast<uint32_t*>(out_row + h * D + d) = bad ? kAttnBf16NaN2 : pack_bf16x2(a0 * inv, a1 * inv);
    } else {
      const int64_t idx = (t * p.q_heads + qh0 + h) * p.splits + split;
      *reinterpret_cast<float2*>(p.part_acc + idx * D + d) = make_float2(a0 * p.v_scale, a1 * p.v_scale);
      if (d == 0) p.part_ml[idx] = make_float2(M, bad ? __int_as_float(0x7FC00000) : Lsum);
    }
  }
}

template <int D, KvPath kPath>
void launch(const SplitParams& p, int64_t base_blocks, cudaStream_t stream) {
  const std::size_t smem = DecodeLayout<D, kPath>::bytes();
  // Per call: the opt-in is a property of the current device.
  const cudaError_t attr = cudaFuncSetAttribute(decode_tc_kernel<D, kPath>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(smem));
  require(attr == cudaSuccess,
          std::string("paged_attention_cuda (tensor cores): shared memory opt-in failed: ") + cudaGetErrorString(attr));
  launch_pdl(decode_tc_kernel<D, kPath>, dim3(static_cast<unsigned>(base_blocks), 1, static_cast<unsigned>(p.splits)),
             dim3(kThreads), smem, stream, p);
}

KvPath kv_path(bool fp8, bool fp8_direct) {
  return !fp8 ? KvPath::Bf16 : fp8_direct ? KvPath::Fp8Direct : KvPath::Fp8ViaBf16;
}

template <int D>
std::size_t smem_bytes(KvPath path) {
  switch (path) {
    case KvPath::Bf16: return DecodeLayout<D, KvPath::Bf16>::bytes();
    case KvPath::Fp8ViaBf16: return DecodeLayout<D, KvPath::Fp8ViaBf16>::bytes();
    default: return DecodeLayout<D, KvPath::Fp8Direct>::bytes();
  }
}

template <int D>
void launch_path(const SplitParams& p, int64_t base_blocks, KvPath path, cudaStream_t stream) {
  switch (path) {
    case KvPath::Bf16: launch<D, KvPath::Bf16>(p, base_blocks, stream); break;
    case KvPath::Fp8ViaBf16: launch<D, KvPath::Fp8ViaBf16>(p, base_blocks, stream); break;
    default: launch<D, KvPath::Fp8Direct>(p, base_blocks, stream); break;
  }
}

}  // namespace

bool decode_tensor_cores_supported(int head_dim, int heads_per_block, bool fp8, bool fp8_direct) {
  if (!(head_dim == 32 || head_dim == 64 || head_dim == 128) || heads_per_block < 1 || heads_per_block > kRows)
    return false;
  const KvPath path = kv_path(fp8, fp8_direct);
  const std::size_t smem =
      head_dim == 32 ? smem_bytes<32>(path) : head_dim == 64 ? smem_bytes<64>(path) : smem_bytes<128>(path);
  // BF16 at head_dim 128 takes 106 KB: more than a block may opt into on sm_120 / sm_121 (99 KB).
  return static_cast<int64_t>(smem) + kStaticSmemBound <= device_limits().smem_optin;
}

void launch_decode_tensor_cores(const SplitParams& p, int64_t base_blocks, bool fp8, bool fp8_direct,
                                cudaStream_t stream) {
  require(decode_tensor_cores_supported(p.D, p.HG, fp8, fp8_direct),
          "paged_attention_cuda (tensor cores): head_dim " + std::to_string(p.D) + " with " + std::to_string(p.HG) +
              " heads per block is not supported here");
  const KvPath path = kv_path(fp8, fp8_direct);
  switch (p.D) {
    case 32: launch_path<32>(p, base_blocks, path, stream); break;
    case 64: launch_path<64>(p, base_blocks, path, stream); break;
    default: launch_path<128>(p, base_blocks, path, stream); break;
  }
}

}  // namespace nemotron::kernels::cuda
