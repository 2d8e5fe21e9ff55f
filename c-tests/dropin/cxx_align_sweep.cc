// C++ aligned new/delete (operator new(size_t, align_val_t), its nothrow
// and array forms, sized aligned delete) over every power-of-two alignment
// from 1 to 64 KiB and sizes from 0 to twice the alignment, outside any
// scope and inside NORECLAIM, NOFAIL and both: the C++ half of
// align_sweep.c. libstdc++ sends these to aligned_alloc/free.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

#include "memscope.h"

static int failures;
static long blocks;

static void use(void *p, size_t align, size_t size, const char *what, unsigned scope)
{
    blocks++;
    if (p == nullptr || reinterpret_cast<uintptr_t>(p) % align != 0) {
        if (++failures < 20)
            std::fprintf(stderr, "FAIL %s(size %zu, align %zu) in scope %#x: %p\n", what, size, align, scope, p);
        return;
    }
    if (size > 0)
        std::memset(p, 0x5a, size);
}

static void one(size_t align, size_t size, unsigned scope)
{
    std::align_val_t al{align};
    void *p[2];
    for (auto &q : p) {
        q = ::operator new(size, al);
        use(q, align, size, "operator new", scope);
    }
    for (auto q : p)
        ::operator delete(q, size, al);
    for (auto &q : p) {
        q = ::operator new[](size, al, std::nothrow);
        use(q, align, size, "operator new[] nothrow", scope);
    }
    for (auto q : p)
        ::operator delete[](q, al);
}

static void sweep(unsigned scope)
{
    unsigned saved = memscope_save(scope);
    for (size_t align = 1; align <= (size_t{64} << 10); align *= 2) {
        size_t step = align > 512 ? align / 8 : 1;
        for (size_t size = 0; size <= 2 * align; size += step) {
            one(align, size, scope);
            if (step > 1) {
                one(align, size + 1, scope);
                if (size > 0)
                    one(align, size - 1, scope);
            }
        }
    }
    memscope_restore(saved);
}

int main()
{
    ::operator delete(::operator new(1));
    const unsigned scopes[] = {0, MEMSCOPE_NORECLAIM, MEMSCOPE_NOFAIL, MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL};
    for (unsigned s : scopes)
        if (memscope_loaded() || s == 0)
            sweep(s);
    std::fprintf(stderr, "cxx_align_sweep: %ld blocks checked\n", blocks);
    return failures > 125 ? 125 : failures;
}
