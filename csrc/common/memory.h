// Large CPU outputs: ask Linux to back them with transparent huge pages.
//
// glibc serves an allocation above its mmap threshold (at most 32 MiB on 64-bit
// systems) with a fresh mmap, and torch's CPU allocator has no cache: every such output
// is new, untouched memory, and writing it costs one page fault per 4 KiB page (about
// 8 000 faults, ~20 ms, for a 32 MiB output: as long as the kernel's own work in the
// hard `mst_prim` case). With `transparent_hugepage` set to `madvise` (the common
// default) those pages are 4 KiB unless the range is advised; advised, the aligned
// 2 MiB blocks inside it fault once each. torch does the same for every allocation
// under THP_MEM_ALLOC_ENABLE=1; here only for outputs that are certainly fresh mappings.
// The advice changes no value: it is skipped silently where unsupported or refused.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace torch_artic {

// Buffers at least this large are advised (glibc's largest mmap threshold).
constexpr size_t kHugePageAdviceBytes = size_t(32) << 20;

inline void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (data == nullptr || bytes < kHugePageAdviceBytes) return;
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace torch_artic
