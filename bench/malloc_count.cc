// libweir-malloc-count.so: an LD_PRELOAD allocation counter for the bench (allocations per
// request). Every malloc/calloc/realloc/aligned allocation and every free of the process goes
// through glibc's own entry points (__libc_*) after bumping a counter. The counters live in a
// shared mapping of the file named by WEIR_MALLOC_COUNT (kept up to date while the process runs),
// so a bench reads them before and after a load run without stopping the process:
//   WEIR_MALLOC_COUNT=/tmp/m LD_PRELOAD=build/libweir-malloc-count.so weir --config ...
//   bench/malloc_count.py /tmp/m     -> "allocs N frees N bytes N"
// Layout of the file: three little-endian uint64 (allocations, frees, bytes asked for).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);
}

namespace {

struct Counts {
  std::atomic<uint64_t> allocs;
  std::atomic<uint64_t> frees;
  std::atomic<uint64_t> bytes;
};

Counts g_local;  // until the shared mapping exists (and when WEIR_MALLOC_COUNT is unset)
Counts* g_counts = &g_local;

inline void count_alloc(size_t n) {
  g_counts->allocs.fetch_add(1, std::memory_order_relaxed);
  g_counts->bytes.fetch_add(n, std::memory_order_relaxed);
}

__attribute__((constructor)) void map_counts() {
  const char* path = std::getenv("WEIR_MALLOC_COUNT");
  if (path == nullptr || *path == '\0') return;
  int fd = ::open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || ::ftruncate(fd, sizeof(Counts)) != 0) {
    if (fd >= 0) ::close(fd);
    return;
  }
  void* m = ::mmap(nullptr, sizeof(Counts), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) return;
  auto* shared = static_cast<Counts*>(m);
  shared->allocs.store(g_local.allocs.load());
  shared->frees.store(g_local.frees.load());
  shared->bytes.store(g_local.bytes.load());
  g_counts = shared;
}

}  // namespace

extern "C" {

void* malloc(size_t n) {
  count_alloc(n);
  return __libc_malloc(n);
}

void* calloc(size_t count, size_t size) {
  count_alloc(count * size);
  return __libc_calloc(count, size);
}

void* realloc(void* p, size_t n) {
  count_alloc(n);
  if (p != nullptr) g_counts->frees.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}

void free(void* p) {
  if (p == nullptr) return;
  g_counts->frees.fetch_add(1, std::memory_order_relaxed);
  __libc_free(p);
}

void* memalign(size_t align, size_t n) {
  count_alloc(n);
  return __libc_memalign(align, n);
}

void* aligned_alloc(size_t align, size_t n) { return memalign(align, n); }

int posix_memalign(void** out, size_t align, size_t n) {
  if (align < sizeof(void*) || (align & (align - 1)) != 0) return EINVAL;
  void* p = memalign(align, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

}  // extern "C"
