#include "backend/backend.h"
#include "model/device_layers.h"

namespace tandem::backend {

#ifndef TANDEM_HAVE_CUDA
Probe probe_cuda() { return {{}, "built without CUDA (configure with -DTANDEM_CUDA=ON where nvcc exists)"}; }

Result<std::unique_ptr<Backend>> make_cuda_backend(int) {
    return make_error("no CUDA backend: built without CUDA");
}
#endif

Result<void*> upload_tensor(Backend& be, Arena& arena, const std::string& name, const void* data, size_t bytes,
                            Stream* stream) {
    TANDEM_ASSIGN(void* dst, arena.alloc(bytes, name));
    auto st = be.upload(dst, data, bytes, stream);
    if (!st) return make_error("{}: upload to {}: {}", name, be.name(), st.error().message);
    return dst;
}

}  // namespace tandem::backend

#ifndef TANDEM_HAVE_CUDA
namespace tandem {
Result<std::unique_ptr<DeviceLayers>> make_cuda_layers(const Model&, int, const CudaLayerOptions&) {
    return make_error("no CUDA backend: built without CUDA");
}
}  // namespace tandem
#endif
