#include "huge_page_allocator.h"

#include <ATen/EmptyTensor.h>
#include <sys/mman.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace vidfast {
namespace ops {
namespace {

constexpr size_t kAlign = size_t(2) << 20;
constexpr size_t kMaxCachedBlocks = 2;

size_t cache_limit_bytes() {
  static const size_t limit = [] {
    const char* env = std::getenv("VIDFAST_CPU_CACHE_MB");
    const long long mb = env != nullptr && *env != '\0' ? std::atoll(env) : 512;
    return mb > 0 ? static_cast<size_t>(mb) << 20 : size_t(0);
  }();
  return limit;
}

class HugePageAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t nbytes) override {
    const size_t size = (nbytes + kAlign - 1) / kAlign * kAlign;
    if (size == 0) return {nullptr, nullptr, &release, c10::Device(c10::DeviceType::CPU)};
    void* data = take_cached(size);
    if (data == nullptr) {
      TORCH_CHECK(posix_memalign(&data, kAlign, size) == 0, "vidfast: out of memory allocating ", nbytes, " bytes");
#ifdef MADV_HUGEPAGE
      madvise(data, size, MADV_HUGEPAGE);  // advice only: if refused, the block just uses small pages
#endif
    }
    std::lock_guard<std::mutex> lock(mutex_);
    live_[data] = size;
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void copy_data(void* dest, const void* src, size_t count) const override { default_copy_data(dest, src, count); }

  static HugePageAllocator& instance() {
    static HugePageAllocator* allocator = new HugePageAllocator();  // never destroyed: blocks may outlive exit
    return *allocator;
  }

 private:
  static void release(void* data) {
    if (data == nullptr) return;
    HugePageAllocator& self = instance();
    {
      std::lock_guard<std::mutex> lock(self.mutex_);
      const auto it = self.live_.find(data);
      const size_t size = it->second;
      self.live_.erase(it);
      if (self.cached_bytes_ + size <= cache_limit_bytes() && self.cache_.size() < kMaxCachedBlocks) {
        self.cache_.push_back({data, size});
        self.cached_bytes_ += size;
        return;
      }
    }
    std::free(data);
  }

  void* take_cached(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = cache_.begin(); it != cache_.end(); ++it) {
      if (it->second == size) {
        void* data = it->first;
        cached_bytes_ -= size;
        cache_.erase(it);
        return data;
      }
    }
    // A block of another size is unlikely to be asked for again soon: drop the oldest to make room.
    while (!cache_.empty() && (cache_.size() >= kMaxCachedBlocks || cached_bytes_ + size > cache_limit_bytes())) {
      cached_bytes_ -= cache_.front().second;
      std::free(cache_.front().first);
      cache_.erase(cache_.begin());
    }
    return nullptr;
  }

  std::mutex mutex_;
  std::unordered_map<void*, size_t> live_;
  std::vector<std::pair<void*, size_t>> cache_;
  size_t cached_bytes_ = 0;
};

}  // namespace

at::Tensor empty_strided_cached(at::IntArrayRef sizes, at::IntArrayRef strides, at::ScalarType dtype) {
  const auto nbytes = at::detail::computeStorageNbytes(sizes, strides, c10::elementSize(dtype));
  if (nbytes < kAlign) return at::empty_strided(sizes, strides, at::TensorOptions().dtype(dtype));
  return at::detail::empty_strided_generic(sizes, strides, &HugePageAllocator::instance(),
                                           c10::DispatchKeySet(c10::DispatchKey::CPU), dtype);
}

}  // namespace ops
}  // namespace vidfast
