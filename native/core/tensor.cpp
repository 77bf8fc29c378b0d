#include "tensor.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>

#include "cuda_runtime.h"
#include "error.h"
#include "thread_pool.h"

namespace rlfarm {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::u8: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::u8: return "u8";
  }
  return "?";
}

DType parse_dtype(const std::string& name, const char* what) {
  if (name == "f32" || name == "float32") return DType::f32;
  if (name == "bf16" || name == "bfloat16") return DType::bf16;
  if (name == "i32" || name == "int32") return DType::i32;
  if (name == "u8" || name == "uint8") return DType::u8;
  fail(what, ": unknown dtype '", name, "'; expected one of f32, bf16, i32, u8");
}

std::string Device::name() const {
  if (kind == cpu) return "cpu";
  return "cuda:" + std::to_string(index);
}

Device parse_device(const std::string& name, const char* what) {
  if (name == "cpu") return Device::host();
  if (name == "cuda") return Device::gpu(0);
  if (name.rfind("cuda:", 0) == 0) {
    const std::string digits = name.substr(5);
    if (!digits.empty() && digits.size() < 4 &&
        digits.find_first_not_of("0123456789") == std::string::npos) {
      return Device::gpu(std::stoi(digits));
    }
  }
  fail(what, ": unknown device '", name, "'; expected 'cpu', 'cuda' or 'cuda:N'");
}

Storage::~Storage() {
  if (release) release();
}

static void check_cuda_device(Device device) {
  if (!device.is_cuda()) return;
  RLF_CHECK(cuda::compiled(), "device ", device.name(),
            ": this build of rlfarm has no CUDA backend (nvcc was not found when it was built, or "
            "RLFARM_CUDA=0 was set)");
  const int count = cuda::device_count();
  RLF_CHECK(count > 0, "device ", device.name(), ": no CUDA device is available (",
            cuda::unavailable_reason(), ")");
  RLF_CHECK(device.index >= 0 && device.index < count, "device ", device.name(),
            ": there are only ", count, " CUDA device(s)");
}

namespace {

// Host memory for tensors. Freed blocks are kept for reuse by a later tensor of
// the same size (the ops of a training step allocate the same shapes every
// step), which saves the page faults of fresh memory; the cache is bounded by
// RLFARM_HOST_CACHE_MB (default 2048, at most a quarter of physical memory).
// Blocks of 2 MB and more are 2 MB aligned and marked for transparent huge pages.
class HostAllocator {
 public:
  static constexpr size_t kHuge = size_t(2) << 20;

  static size_t rounded(size_t bytes) {
    const size_t unit = bytes >= kHuge ? kHuge : (bytes >= (size_t(64) << 10) ? 4096 : kHostAlignment);
    const size_t n = bytes == 0 ? 1 : bytes;
    return (n + unit - 1) / unit * unit;
  }

  void* allocate(size_t size) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        cached_ -= size;
        return p;
      }
    }
    void* p = std::aligned_alloc(size >= kHuge ? kHuge : kHostAlignment, size);
    if (p == nullptr) {
      empty();  // give the cache back and try once more
      p = std::aligned_alloc(size >= kHuge ? kHuge : kHostAlignment, size);
    }
    RLF_CHECK(p != nullptr, "out of host memory allocating ", size, " bytes");
#ifdef MADV_HUGEPAGE
    if (size >= kHuge) madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
  }

  void release(void* p, size_t size) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + size <= limit_) {
        free_.emplace(size, p);
        cached_ += size;
        return;
      }
    }
    std::free(p);
  }

  void empty() {
    std::multimap<size_t, void*> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks.swap(free_);
      cached_ = 0;
    }
    for (auto& [size, p] : blocks) std::free(p);
  }

  size_t cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

 private:
  static size_t configured_limit() {
    size_t mb = 2048;
    if (const char* env = std::getenv("RLFARM_HOST_CACHE_MB")) mb = static_cast<size_t>(std::strtoull(env, nullptr, 10));
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    const size_t quarter = pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) / 4 : SIZE_MAX;
    return std::min(mb << 20, quarter);
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  size_t cached_ = 0;
  const size_t limit_ = configured_limit();
};

HostAllocator& host_allocator() {
  static HostAllocator* instance = new HostAllocator();  // outlives every tensor, even at exit
  return *instance;
}

}  // namespace

size_t host_cache_bytes() { return host_allocator().cached(); }
void empty_host_cache() { host_allocator().empty(); }

StoragePtr allocate(Device device, size_t bytes) {
  auto storage = std::make_shared<Storage>();
  storage->device = device;
  storage->bytes = bytes;
  if (device.is_cpu()) {
    const size_t size = HostAllocator::rounded(bytes);
    void* data = host_allocator().allocate(size);
    storage->data = data;
    storage->release = [data, size] { host_allocator().release(data, size); };
  } else {
    check_cuda_device(device);
    // Zero-byte tensors still get a distinct, valid pointer.
    void* data = cuda::malloc(device.index, bytes == 0 ? kHostAlignment : bytes);
    const int index = device.index;
    storage->data = data;
    storage->release = [index, data] { cuda::free(index, data); };
  }
  return storage;
}

StoragePtr wrap_host(void* data, size_t bytes, std::shared_ptr<StorageOwner> owner) {
  auto storage = std::make_shared<Storage>();
  storage->device = Device::host();
  storage->data = data;
  storage->bytes = bytes;
  storage->owner = std::move(owner);
  return storage;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return std::string(dtype_name(dtype)) + " " + shape_str(shape) + " on " + device().name();
}

void check_usable(const Tensor& t, const char* what) {
  RLF_CHECK(t.defined(), what, ": expected a tensor, got an undefined one");
  if (t.storage->owner) {
    const std::string reason = t.storage->owner->invalid_reason();
    RLF_CHECK(reason.empty(), what, ": ", reason);
  }
}

static void check_shape(const Shape& shape, const char* what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    RLF_CHECK(d >= 0, what, ": shape ", shape_str(shape), " has a negative dimension");
    RLF_CHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / 16 / d, what, ": shape ",
              shape_str(shape), " is too large");
    n *= d;
  }
  RLF_CHECK(shape.size() <= 8, what, ": at most 8 dimensions are supported; got ", shape.size());
}

Tensor view(const Tensor& base, int64_t offset, const Shape& shape) {
  check_usable(base, "view");
  check_shape(shape, "view");
  const size_t size = dtype_size(base.dtype);
  RLF_CHECK(offset >= 0 && static_cast<size_t>(offset + shape_numel(shape)) * size + base.offset <= base.storage->bytes,
            "view: ", shape_str(shape), " at element ", offset, " runs past the end of ", base.describe());
  Tensor out = base;
  out.offset = base.offset + static_cast<size_t>(offset) * size;
  out.shape = shape;
  return out;
}

Tensor view_bytes_as(const Tensor& bytes, int64_t byte_offset, DType dtype, const Shape& shape) {
  check_usable(bytes, "viewBytes");
  RLF_CHECK(bytes.dtype == DType::u8 && bytes.device().is_cpu(), "viewBytes: expected host u8 bytes; got ",
            bytes.describe());
  check_shape(shape, "viewBytes");
  const size_t size = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  RLF_CHECK(byte_offset >= 0 && static_cast<size_t>(byte_offset) + size <= static_cast<size_t>(bytes.numel()),
            "viewBytes: ", size, " bytes at ", byte_offset, " run past the end of ", bytes.describe());
  const char* src = static_cast<const char*>(bytes.raw()) + byte_offset;
  if (reinterpret_cast<uintptr_t>(src) % dtype_size(dtype) == 0) {
    Tensor out = bytes;
    out.offset = bytes.offset + static_cast<size_t>(byte_offset);
    out.dtype = dtype;
    out.shape = shape;
    return out;
  }
  Tensor out = empty(shape, dtype, Device::host());
  std::memcpy(out.raw(), src, size);
  return out;
}

namespace {
struct MappedFile : StorageOwner {
  void* data = nullptr;
  size_t bytes = 0;
  ~MappedFile() override {
    if (data != nullptr && data != MAP_FAILED) munmap(data, bytes);
  }
};
}  // namespace

Tensor map_file(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  RLF_CHECK(fd >= 0, "cannot open ", path, ": ", std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    fail("cannot read ", path, ": ", std::strerror(err));
  }
  auto mapped = std::make_shared<MappedFile>();
  mapped->bytes = static_cast<size_t>(st.st_size);
  if (mapped->bytes > 0) {
    mapped->data = mmap(nullptr, mapped->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  }
  const int err = errno;
  close(fd);
  RLF_CHECK(mapped->bytes == 0 || mapped->data != MAP_FAILED, "cannot map ", path, ": ", std::strerror(err));
  Tensor t;
  t.dtype = DType::u8;
  t.shape = {static_cast<int64_t>(mapped->bytes)};
  void* data = mapped->bytes > 0 ? mapped->data : static_cast<void*>(&mapped->bytes);
  t.storage = wrap_host(data, mapped->bytes, mapped);
  return t;
}

Tensor empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape, "empty");
  Tensor t;
  t.dtype = dtype;
  t.shape = shape;
  t.storage = allocate(device, static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype));
  return t;
}

Tensor zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device.is_cpu()) {
    std::memset(t.raw(), 0, t.nbytes());
  } else {
    cuda::memset_zero(device.index, t.raw(), t.nbytes());
  }
  return t;
}

static void copy_bytes(const Tensor& dst, const Tensor& src) {
  const size_t bytes = src.nbytes();
  if (bytes == 0) return;
  const Device from = src.device(), to = dst.device();
  if (from.is_cpu() && to.is_cpu()) {
    // Large copies are split over the pool: one core cannot saturate memory.
    char* d = static_cast<char*>(dst.raw());
    const char* s = static_cast<const char*>(src.raw());
    parallel_for(static_cast<int64_t>(bytes), 1 << 20, [&](int64_t begin, int64_t end) {
      std::memcpy(d + begin, s + begin, static_cast<size_t>(end - begin));
    });
  } else if (from.is_cpu()) {
    cuda::copy_to_device(to.index, dst.raw(), src.raw(), bytes);
  } else if (to.is_cpu()) {
    cuda::copy_to_host(from.index, dst.raw(), src.raw(), bytes);
  } else if (from == to) {
    cuda::copy_device_to_device(to.index, dst.raw(), src.raw(), bytes);
  } else {
    Tensor staging = empty(src.shape, src.dtype, Device::host());
    cuda::copy_to_host(from.index, staging.raw(), src.raw(), bytes);
    cuda::copy_to_device(to.index, dst.raw(), staging.raw(), bytes);
  }
}

void copy_into(const Tensor& dst, const Tensor& src) {
  check_usable(src, "copy");
  check_usable(dst, "copy");
  RLF_CHECK(dst.dtype == src.dtype && dst.numel() == src.numel(), "copy: ", src.describe(), " does not fit ",
            dst.describe());
  copy_bytes(dst, src);
}

Tensor to_device(const Tensor& t, Device device) {
  check_usable(t, "to");
  if (t.device() == device) return t;
  Tensor out = empty(t.shape, t.dtype, device);
  copy_bytes(out, t);
  return out;
}

Tensor clone(const Tensor& t) {
  check_usable(t, "clone");
  Tensor out = empty(t.shape, t.dtype, t.device());
  copy_bytes(out, t);
  return out;
}

Tensor row_view(const Tensor& t, int64_t start, int64_t end) {
  check_usable(t, "rows");
  RLF_CHECK(t.ndim() >= 1, "rows: ", t.describe(), " has no row dimension");
  const int64_t rows = t.shape[0];
  RLF_CHECK(start >= 0 && start <= end && end <= rows, "rows: [", start, ", ", end, ") is not a range of the ", rows,
            " rows of ", t.describe());
  Shape shape = t.shape;
  shape[0] = end - start;
  const Shape row_shape(t.shape.begin() + 1, t.shape.end());
  return view(t, start * shape_numel(row_shape), shape);
}

Tensor reshape(const Tensor& t, const Shape& shape) {
  check_usable(t, "reshape");
  Shape resolved = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < resolved.size(); ++i) {
    if (resolved[i] == -1) {
      RLF_CHECK(infer < 0, "reshape: only one dimension may be -1; got ", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      RLF_CHECK(resolved[i] >= 0, "reshape: invalid dimension ", resolved[i], " in ", shape_str(shape));
      known *= resolved[i];
    }
  }
  if (infer >= 0) {
    RLF_CHECK(known > 0 && t.numel() % known == 0, "reshape: cannot reshape ", t.describe(), " to ",
              shape_str(shape));
    resolved[infer] = t.numel() / known;
  }
  check_shape(resolved, "reshape");
  RLF_CHECK(shape_numel(resolved) == t.numel(), "reshape: cannot reshape ", t.describe(), " (",
            t.numel(), " elements) to ", shape_str(resolved), " (", shape_numel(resolved), " elements)");
  Tensor out = t;
  out.shape = resolved;
  return out;
}

}  // namespace rlfarm
