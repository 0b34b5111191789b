// Without the CUDA backend there is no device: the queries say so.
#include "kernels/device_info.h"

#ifndef NEMOTRON_HAVE_CUDA
namespace nemotron::kernels {

bool cuda_device_info(int, DeviceInfo*, std::string* error) {
  if (error) *error = "built without the CUDA backend (NEMOTRON_CUDA=OFF)";
  return false;
}

bool cuda_measure_copy_bandwidth(int, std::size_t, int, double*, std::string* error) {
  if (error) *error = "built without the CUDA backend (NEMOTRON_CUDA=OFF)";
  return false;
}

}  // namespace nemotron::kernels
#endif
