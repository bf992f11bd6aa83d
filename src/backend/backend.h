// The accelerator backend interface: what the executor needs from a device, and nothing of its
// kernels. CUDA implements it (backend/cuda/); an Ascend backend can implement the same later.
//
// Ownership: buffers and streams belong to the Backend that made them and must be released
// through it (or die with it). Device pointers are opaque to host code: only kernels and copies
// touch them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace tandem::backend {

struct DeviceInfo {
    int index = 0;
    std::string name;          // e.g. "NVIDIA H100 80GB HBM3"
    uint64_t total_bytes = 0;
    uint64_t free_bytes = 0;   // at probe time
    int cc_major = 0, cc_minor = 0;
};

// The devices of one backend kind, or why there are none ("built without CUDA", "no CUDA
// device: cudaGetDeviceCount: ..."): callers print `reason` and fall back to the CPU.
struct Probe {
    std::vector<DeviceInfo> devices;
    std::string reason;
};

// CUDA devices visible to this process; never fails (no driver / no device: empty + reason).
Probe probe_cuda();

// A recorded sequence of device work (a CUDA graph), replayed with one launch: the same kernels,
// arguments and copies as when it was recorded (device pointers included), so it is only valid
// while the buffers it touches stay where they were.
class Graph {
public:
    virtual ~Graph() = default;
};

// A point in a stream's queue (cudaEvent_t on CUDA): recorded on one stream, waited for by
// another, so two streams (compute, copies) order their work without the host waiting.
class Event {
public:
    virtual ~Event() = default;
};

// An in-order queue of device work (cudaStream_t on CUDA). `handle()` is what kernel launchers take.
class Stream {
public:
    virtual ~Stream() = default;
    virtual void* handle() = 0;
    virtual Status synchronize() = 0;
    // Records instead of running what is queued on this stream until end_capture() (no
    // synchronous call may happen in between); then launch() queues the recording.
    virtual Status begin_capture() = 0;
    virtual Result<std::unique_ptr<Graph>> end_capture() = 0;
    virtual Status launch(const Graph& g) = 0;
    // Marks the work queued so far; wait() makes the work queued after it wait for the last
    // record() of `e` (on any stream of the same device; an event never recorded is no wait).
    virtual Status record(Event& e) = 0;
    virtual Status wait(Event& e) = 0;
};

// One device allocation handed out front to back (weights, KV pages, scratch): no per-tensor
// allocation calls, nothing freed apart; reset() forgets everything at once.
class Arena {
public:
    virtual ~Arena() = default;
    // A device pointer aligned to `align` bytes, or an error naming `what` and the bytes left.
    virtual Result<void*> alloc(size_t bytes, const std::string& what, size_t align = 256) = 0;
    virtual size_t used() const = 0;
    virtual size_t capacity() const = 0;
    virtual void reset() = 0;
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual const DeviceInfo& device() const = 0;
    std::string name() const { return "cuda:" + std::to_string(device().index); }

    virtual Result<std::unique_ptr<Arena>> make_arena(size_t bytes) = 0;
    virtual Result<std::unique_ptr<Stream>> make_stream() = 0;
    virtual Result<std::unique_ptr<Event>> make_event() = 0;

    // Page-locked host memory (the staging area of hidden states between CPU experts and the
    // device); free with free_pinned.
    virtual Result<void*> alloc_pinned(size_t bytes) = 0;
    virtual void free_pinned(void* p) = 0;
    // Page-locks existing host memory (e.g. weights mapped from a file, read only) so copies from
    // it are asynchronous and run at the bus's speed; undo with unregister_host. An error where the
    // system refuses (locked-memory limits): the memory then stays usable as pageable memory.
    virtual Status register_host(const void* p, size_t bytes) = 0;
    virtual void unregister_host(const void* p) = 0;

    // Copies; asynchronous on `stream` when given (host memory must then be pinned or stay alive
    // until the stream is synchronized), synchronous otherwise. The synchronous ones and memset
    // are not ordered after work queued on streams (CUDA's streams here are non-blocking): call
    // them while the device is idle (loading), or synchronize the streams first.
    virtual Status upload(void* dst_dev, const void* src_host, size_t bytes, Stream* stream = nullptr) = 0;
    virtual Status download(void* dst_host, const void* src_dev, size_t bytes, Stream* stream = nullptr) = 0;
    virtual Status memset(void* dst_dev, int value, size_t bytes) = 0;
    // Device memory free now (DeviceInfo::free_bytes is the probe's figure).
    virtual Result<uint64_t> free_memory() = 0;
};

// A backend on CUDA device `index`; an error (with the reason) when there is none or the build
// has no CUDA.
Result<std::unique_ptr<Backend>> make_cuda_backend(int index);

// Copies a tensor's bytes (as stored: quantized blocks stay quantized) into `arena` and returns
// the device pointer.
Result<void*> upload_tensor(Backend& be, Arena& arena, const std::string& name, const void* data, size_t bytes,
                            Stream* stream = nullptr);

}  // namespace tandem::backend
