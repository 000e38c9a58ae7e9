// Returning a large spent buffer's pages to the kernel on a background thread.
//
// Why: one inference's preprocessing material is one buffer of hundreds of MB (the dealer's
// frame). Freeing it unmaps every page, about 0.3 us per 4 KiB page: 35 ms of CPU (73 ms wall)
// for 470 MB, and with the GIL held, because the free happens in the buffer's deallocation.
// Where the last key view of the buffer dies, inside the last gate layer of the online phase,
// that is latency. PageDiscard instead does madvise(MADV_DONTNEED) on the buffer's whole pages
// from a native thread without the GIL (the same work: the pages are freed and the memory goes
// back at once), while it holds the buffer (a Py_buffer export) so that nothing can unmap or
// reuse the range meanwhile. Destroying it joins the thread and then lets the buffer go, whose
// deallocation now finds no pages to free.
#include <atomic>
#include <memory>
#include <thread>

#include "bindings.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#define PI_HAVE_MADVISE 1
#endif

namespace pi_native {
namespace {

class PageDiscard {
 public:
  explicit PageDiscard(const py::buffer& buf) : info_(std::make_unique<py::buffer_info>(buf.request())) {
#ifdef PI_HAVE_MADVISE
    const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const auto lo = reinterpret_cast<uintptr_t>(info_->ptr);
    const uintptr_t hi = lo + static_cast<uintptr_t>(info_->size * info_->itemsize);
    const uintptr_t start = (lo + page - 1) / page * page, end = hi / page * page;  // whole pages inside
    if (end > start) {
      bytes_ = end - start;
      worker_ = std::thread([this, start, n = bytes_] {
        madvise(reinterpret_cast<void*>(start), n, MADV_DONTNEED);
        done_.store(true, std::memory_order_release);
      });
      return;
    }
#endif
    done_.store(true, std::memory_order_release);
  }
  PageDiscard(const PageDiscard&) = delete;
  PageDiscard& operator=(const PageDiscard&) = delete;
  ~PageDiscard() {
    if (worker_.joinable()) worker_.join();  // before the buffer (and its pages' range) is let go
  }
  size_t bytes() const { return bytes_; }
  bool done() const { return done_.load(std::memory_order_acquire); }

 private:
  std::unique_ptr<py::buffer_info> info_;  // the export that keeps the buffer alive and unmoved
  std::atomic<bool> done_{false};
  size_t bytes_ = 0;
  std::thread worker_;  // last: started once the members it reads exist
};

}  // namespace

void bind_memory(py::module_& m) {
  py::class_<PageDiscard>(m, "PageDiscard",
                          "PageDiscard(buffer): returns the pages of a spent buffer (bytes, bytearray, array) to "
                          "the kernel from a background thread without the GIL; the buffer must not be read "
                          "again (its pages read as zeros). Keep the object until the buffer may be freed: "
                          "dropping it waits for the thread, then releases the buffer. No-op off Linux.")
      .def(py::init<const py::buffer&>(), py::arg("buffer"))
      .def_property_readonly("bytes", &PageDiscard::bytes, "Bytes discarded (the buffer's whole pages).")
      .def_property_readonly("done", &PageDiscard::done, "True once the pages are back with the kernel.");
}

}  // namespace pi_native
