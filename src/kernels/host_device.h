#pragma once
// NEMOTRON_HD marks small functions usable from host and device code (number formats, the
// sampler's random numbers): __host__ __device__ under nvcc, plain inline elsewhere.
#if defined(__CUDACC__)
#define NEMOTRON_HD __host__ __device__ __forceinline__
#else
#define NEMOTRON_HD inline
#endif
