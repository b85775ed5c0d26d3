#pragma once
#include <cstdint>
#include <cuda_runtime.h>

// y = bf16(weight * bf16(x * rsqrt(mean(x^2) + eps))), x = bf16(hidden + residual), rows of `cols` contiguous
// bf16 values; `vectors`: cols % 8 == 0 and every pointer 16-byte aligned. Launches on `stream`.
cudaError_t residual_rmsnorm_launch(const void* hidden, const void* residual, const void* weight, void* out,
                                    int64_t rows, int64_t cols, float eps, bool vectors, cudaStream_t stream);
