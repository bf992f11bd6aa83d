// The CUDA implementation of backend::Backend (plain C++ over the CUDA runtime; kernels live in
// kernels.cu).
#include <cuda_runtime.h>

#include "backend/backend.h"

namespace tandem::backend {
namespace {

std::string cuda_err(const char* what, cudaError_t e) {
    return fmt::format("{}: {} ({})", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

class CudaGraph final : public Graph {
public:
    explicit CudaGraph(cudaGraphExec_t exec) : exec_(exec) {}
    ~CudaGraph() override { cudaGraphExecDestroy(exec_); }
    cudaGraphExec_t exec() const { return exec_; }

private:
    cudaGraphExec_t exec_;
};

class CudaEvent final : public Event {
public:
    explicit CudaEvent(cudaEvent_t e) : e_(e) {}
    ~CudaEvent() override { cudaEventDestroy(e_); }
    cudaEvent_t get() const { return e_; }

private:
    cudaEvent_t e_;
};

class CudaStream final : public Stream {
public:
    explicit CudaStream(cudaStream_t s) : s_(s) {}
    ~CudaStream() override { cudaStreamDestroy(s_); }
    void* handle() override { return s_; }
    Status synchronize() override {
        const cudaError_t e = cudaStreamSynchronize(s_);
        if (e != cudaSuccess) return Error{cuda_err("cudaStreamSynchronize", e)};
        return ok_status();
    }
    Status begin_capture() override {
        // thread-local: another thread's unrelated CUDA calls do not break this capture
        const cudaError_t e = cudaStreamBeginCapture(s_, cudaStreamCaptureModeThreadLocal);
        if (e != cudaSuccess) return Error{cuda_err("cudaStreamBeginCapture", e)};
        return ok_status();
    }
    Result<std::unique_ptr<Graph>> end_capture() override {
        cudaGraph_t graph = nullptr;
        cudaError_t e = cudaStreamEndCapture(s_, &graph);
        if (e != cudaSuccess) {
            if (graph) cudaGraphDestroy(graph);
            cudaGetLastError();  // a failed capture leaves its error behind: do not let it hit the next launch
            return Error{cuda_err("cudaStreamEndCapture", e)};
        }
        cudaGraphExec_t exec = nullptr;
        e = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);
        if (e != cudaSuccess) return Error{cuda_err("cudaGraphInstantiate", e)};
        return std::unique_ptr<Graph>(new CudaGraph(exec));
    }
    Status launch(const Graph& g) override {
        const cudaError_t e = cudaGraphLaunch(static_cast<const CudaGraph&>(g).exec(), s_);
        if (e != cudaSuccess) return Error{cuda_err("cudaGraphLaunch", e)};
        return ok_status();
    }
    Status record(Event& ev) override {
        const cudaError_t e = cudaEventRecord(static_cast<CudaEvent&>(ev).get(), s_);
        if (e != cudaSuccess) return Error{cuda_err("cudaEventRecord", e)};
        return ok_status();
    }
    Status wait(Event& ev) override {
        const cudaError_t e = cudaStreamWaitEvent(s_, static_cast<CudaEvent&>(ev).get(), 0);
        if (e != cudaSuccess) return Error{cuda_err("cudaStreamWaitEvent", e)};
        return ok_status();
    }

private:
    cudaStream_t s_;
};

class CudaArena final : public Arena {
public:
    CudaArena(void* base, size_t cap) : base_((uint8_t*)base), cap_(cap) {}
    ~CudaArena() override { cudaFree(base_); }
    Result<void*> alloc(size_t bytes, const std::string& what, size_t align) override {
        const size_t at = (used_ + align - 1) / align * align;
        if (at + bytes > cap_)
            return make_error("{}: device arena full: needs {} bytes, {} of {} left", what, bytes,
                              cap_ - std::min(cap_, at), cap_);
        used_ = at + bytes;
        return (void*)(base_ + at);
    }
    size_t used() const override { return used_; }
    size_t capacity() const override { return cap_; }
    void reset() override { used_ = 0; }

private:
    uint8_t* base_;
    size_t cap_;
    size_t used_ = 0;
};

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(DeviceInfo info) : info_(std::move(info)) {}
    const DeviceInfo& device() const override { return info_; }

    Result<std::unique_ptr<Arena>> make_arena(size_t bytes) override {
        TANDEM_TRY(select());
        void* p = nullptr;
        const cudaError_t e = cudaMalloc(&p, bytes);
        if (e != cudaSuccess) return make_error("{}: arena of {} bytes: {}", name(), bytes, cuda_err("cudaMalloc", e));
        return std::unique_ptr<Arena>(new CudaArena(p, bytes));
    }
    Result<std::unique_ptr<Stream>> make_stream() override {
        TANDEM_TRY(select());
        cudaStream_t s = nullptr;
        const cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
        if (e != cudaSuccess) return make_error("{}: {}", name(), cuda_err("cudaStreamCreate", e));
        return std::unique_ptr<Stream>(new CudaStream(s));
    }
    Result<std::unique_ptr<Event>> make_event() override {
        TANDEM_TRY(select());
        cudaEvent_t ev = nullptr;
        const cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
        if (e != cudaSuccess) return make_error("{}: {}", name(), cuda_err("cudaEventCreate", e));
        return std::unique_ptr<Event>(new CudaEvent(ev));
    }
    Status register_host(const void* p, size_t bytes) override {
        TANDEM_TRY(select());
        const cudaError_t e = cudaHostRegister(const_cast<void*>(p), bytes,
                                               cudaHostRegisterPortable | cudaHostRegisterReadOnly);
        if (e != cudaSuccess) {
            cudaGetLastError();  // (not sticky: clear it)
            return make_error("{}: page-locking {} bytes: {}", name(), bytes, cuda_err("cudaHostRegister", e));
        }
        return ok_status();
    }
    void unregister_host(const void* p) override { cudaHostUnregister(const_cast<void*>(p)); }
    Result<void*> alloc_pinned(size_t bytes) override {
        void* p = nullptr;
        const cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
        if (e != cudaSuccess) return make_error("{}: pinned {} bytes: {}", name(), bytes, cuda_err("cudaHostAlloc", e));
        return p;
    }
    void free_pinned(void* p) override { cudaFreeHost(p); }
    Status upload(void* dst, const void* src, size_t bytes, Stream* stream) override {
        return copy(dst, src, bytes, cudaMemcpyHostToDevice, stream);
    }
    Status download(void* dst, const void* src, size_t bytes, Stream* stream) override {
        return copy(dst, src, bytes, cudaMemcpyDeviceToHost, stream);
    }
    Status memset(void* dst, int value, size_t bytes) override {
        TANDEM_TRY(select());
        const cudaError_t e = cudaMemset(dst, value, bytes);
        if (e != cudaSuccess) return Error{cuda_err("cudaMemset", e)};
        return ok_status();
    }

    Result<uint64_t> free_memory() override {
        TANDEM_TRY(select());
        size_t free_b = 0, total_b = 0;
        const cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
        if (e != cudaSuccess) return make_error("{}: {}", name(), cuda_err("cudaMemGetInfo", e));
        return (uint64_t)free_b;
    }

private:
    Status select() {  // (no call when current: copies may be recorded into a graph)
        int cur = -1;
        if (cudaGetDevice(&cur) == cudaSuccess && cur == info_.index) return ok_status();
        const cudaError_t e = cudaSetDevice(info_.index);
        if (e != cudaSuccess) return make_error("{}: {}", name(), cuda_err("cudaSetDevice", e));
        return ok_status();
    }
    Status copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, Stream* stream) {
        TANDEM_TRY(select());
        const cudaError_t e = stream ? cudaMemcpyAsync(dst, src, bytes, kind, (cudaStream_t)stream->handle())
                                     : cudaMemcpy(dst, src, bytes, kind);
        if (e != cudaSuccess) return make_error("{}: {}", name(), cuda_err("cudaMemcpy", e));
        return ok_status();
    }

    DeviceInfo info_;
};

}  // namespace

Probe probe_cuda() {
    Probe p;
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        p.reason = "no CUDA device: " + cuda_err("cudaGetDeviceCount", e);
        return p;
    }
    if (n == 0) {
        p.reason = "no CUDA device: cudaGetDeviceCount found none";
        return p;
    }
    for (int i = 0; i < n; ++i) {
        cudaDeviceProp prop{};
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
        DeviceInfo d;
        d.index = i;
        d.name = prop.name;
        d.total_bytes = prop.totalGlobalMem;
        d.cc_major = prop.major;
        d.cc_minor = prop.minor;
        size_t free_b = 0, total_b = 0;
        if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) d.free_bytes = free_b;
        p.devices.push_back(std::move(d));
    }
    if (p.devices.empty()) p.reason = "no CUDA device: cudaGetDeviceProperties failed on every device";
    return p;
}

Result<std::unique_ptr<Backend>> make_cuda_backend(int index) {
    Probe p = probe_cuda();
    if (p.devices.empty()) return Error{p.reason};
    for (auto& d : p.devices)
        if (d.index == index) return std::unique_ptr<Backend>(new CudaBackend(d));
    return make_error("cuda:{}: no such device ({} found)", index, p.devices.size());
}

}  // namespace tandem::backend
