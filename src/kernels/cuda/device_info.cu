// Device facts used by `inspect` and `bench`: name, memory, and the achieved copy
// bandwidth (the practical roofline benchmarks report against).
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "kernels/device_info.h"

namespace nemotron::kernels {
namespace {

__global__ void copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, size_t n) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = src[i];
}

bool check(cudaError_t e, std::string* error) {
  if (e == cudaSuccess) return true;
  if (error) *error = cudaGetErrorString(e);
  return false;
}

}  // namespace

bool cuda_device_info(int device, DeviceInfo* info, std::string* error) {
  int count = 0;
  if (!check(cudaGetDeviceCount(&count), error)) return false;
  if (device >= count) {
    if (error) *error = "no CUDA device " + std::to_string(device);
    return false;
  }
  cudaDeviceProp prop{};
  if (!check(cudaGetDeviceProperties(&prop, device), error)) return false;
  info->name = prop.name;
  info->sm_major = prop.major;
  info->sm_minor = prop.minor;
  info->multiprocessors = prop.multiProcessorCount;
  info->total_memory_bytes = prop.totalGlobalMem;
  info->integrated = prop.integrated != 0;
  size_t free_b = 0, total_b = 0;
  if (!check(cudaSetDevice(device), error)) return false;
  if (!check(cudaMemGetInfo(&free_b, &total_b), error)) return false;
  info->free_memory_bytes = free_b;
  return true;
}

bool cuda_measure_copy_bandwidth(int device, size_t bytes, int iterations, double* gbps,
                                 std::string* error) {
  if (!check(cudaSetDevice(device), error)) return false;
  bytes = bytes / sizeof(uint4) * sizeof(uint4);
  void *src = nullptr, *dst = nullptr;
  cudaEvent_t start{}, stop{};
  bool ok = check(cudaMalloc(&src, bytes), error) && check(cudaMalloc(&dst, bytes), error) &&
            check(cudaMemset(src, 1, bytes), error) && check(cudaEventCreate(&start), error) &&
            check(cudaEventCreate(&stop), error);
  if (ok) {
    const size_t n = bytes / sizeof(uint4);
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, device);
    const int blocks = prop.multiProcessorCount * 8;
    copy_kernel<<<blocks, 256>>>(static_cast<const uint4*>(src), static_cast<uint4*>(dst), n);
    cudaEventRecord(start);
    for (int i = 0; i < iterations; ++i)
      copy_kernel<<<blocks, 256>>>(static_cast<const uint4*>(src), static_cast<uint4*>(dst), n);
    cudaEventRecord(stop);
    ok = check(cudaEventSynchronize(stop), error);
    float ms = 0;
    if (ok) ok = check(cudaEventElapsedTime(&ms, start, stop), error);
    // A copy reads and writes every byte.
    if (ok) *gbps = 2.0 * static_cast<double>(bytes) * iterations / (ms * 1e-3) / 1e9;
  }
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  if (src) cudaFree(src);
  if (dst) cudaFree(dst);
  return ok;
}

}  // namespace nemotron::kernels
