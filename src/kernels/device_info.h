#pragma once
// What the engine knows about an accelerator. Implemented in cuda/device_info.cu when
// the CUDA backend is built (NEMOTRON_HAVE_CUDA); without it, the queries report that
// no device exists.
#include <cstddef>
#include <string>

namespace nemotron::kernels {

struct DeviceInfo {
  std::string name;
  int sm_major = 0, sm_minor = 0;
  int multiprocessors = 0;
  std::size_t total_memory_bytes = 0;
  std::size_t free_memory_bytes = 0;
  // cudaDevAttrIntegrated: the GPU shares the host's memory (DGX Spark GB10, Jetson), so its
  // free memory and the host's available memory describe the same RAM.
  bool integrated = false;
};

// False (with *error set) when there is no such device or no CUDA backend.
bool cuda_device_info(int device, DeviceInfo* info, std::string* error);

// Achieved device-memory bandwidth of a streaming copy kernel over `bytes`, in GB/s
// (read + write counted), averaged over `iterations`.
bool cuda_measure_copy_bandwidth(int device, std::size_t bytes, int iterations, double* gbps,
                                 std::string* error);

}  // namespace nemotron::kernels
