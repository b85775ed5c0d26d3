// The torch binding of kernel.cu (official cuda_cpp format: PYBIND11_MODULE exposes the entry point).
#include <torch/extension.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernel.h"

namespace {
bool aligned16(const torch::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }
}  // namespace

// Destination-passing: the inputs in definition order, then the output, written in place.
void run(torch::Tensor hidden_states, torch::Tensor residual, torch::Tensor weight, double eps, torch::Tensor output) {
    TORCH_CHECK(hidden_states.is_cuda(), "hidden_states must be a CUDA tensor");
    for (const auto* t : {&hidden_states, &residual, &weight, &output})
        TORCH_CHECK(t->scalar_type() == torch::kBFloat16, "expected bfloat16 tensors");
    const int64_t cols = weight.numel();
    TORCH_CHECK(cols > 0 && hidden_states.size(-1) == cols, "the last dimension must match weight");
    TORCH_CHECK(residual.sizes() == hidden_states.sizes() && output.sizes() == hidden_states.sizes(), "shape mismatch");
    const int64_t rows = hidden_states.numel() / cols;
    if (rows == 0) return;
    const c10::cuda::CUDAGuard guard(hidden_states.device());
    const auto h = hidden_states.contiguous(), r = residual.contiguous(), w = weight.contiguous();
    torch::Tensor out = output.is_contiguous() ? output : torch::empty_like(h);
    const bool vectors = cols % 8 == 0 && aligned16(h) && aligned16(r) && aligned16(w) && aligned16(out);
    const cudaError_t status = residual_rmsnorm_launch(h.data_ptr(), r.data_ptr(), w.data_ptr(), out.data_ptr(), rows,
                                                       cols, static_cast<float>(eps), vectors,
                                                       c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(status == cudaSuccess, "residual_rmsnorm launch failed: ", cudaGetErrorString(status));
    if (!out.is_same(output)) output.copy_(out);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("run", &run, "residual add + RMSNorm, bfloat16 (destination-passing)");
}
