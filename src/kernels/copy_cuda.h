#pragma once
// Device-to-device copies of many blocks in one launch (the CUDA model's state moves: Mamba
// states into and out of the speculation and prefix-cache pools, K/V pages, saved in_proj
// rows). A block is (src, dst, bytes); blocks may differ in size and alignment.
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace nemotron::kernels {

struct CopyBlock {
  const void* src = nullptr;
  void* dst = nullptr;
  int64_t bytes = 0;
};

// Copies every block of `blocks` (device array [n]) on `stream`: one thread block per entry,
// 16-byte moves when src, dst and bytes are all multiples of 16 (else 4-byte, else 1-byte).
// Blocks must not overlap each other's destinations or a destination a source of another
// block (the order among blocks is unspecified). Entries of more than a few hundred KiB copy
// slowly (one thread block each): split them (kCopyPiece). Launched without programmatic
// dependent launch: it starts after the previous work in the stream has finished.
inline constexpr int64_t kCopyPiece = 128 * 1024;
void copy_blocks_cuda(const CopyBlock* blocks, int64_t n, cudaStream_t stream);

}  // namespace nemotron::kernels
