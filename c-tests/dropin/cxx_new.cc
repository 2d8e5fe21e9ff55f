// A C++ program: new/delete (sized and aligned), containers, and threads.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

static int failures;
#define CHECK(c) \
    do { if (!(c)) { ++failures; std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); } } while (0)

struct alignas(256) Wide {
    char bytes[300];
};

int main()
{
    std::vector<std::thread> ts;
    std::vector<long> sums(4);
    for (int t = 0; t < 4; t++) {
        ts.emplace_back([t, &sums] {
            std::map<int, std::string> m;
            for (int i = 0; i < 20000; i++)
                m[i] = std::string(static_cast<size_t>(i % 200), static_cast<char>('a' + i % 26));
            long s = 0;
            for (auto &kv : m)
                s += static_cast<long>(kv.second.size());
            sums[static_cast<size_t>(t)] = s;
        });
    }
    for (auto &t : ts)
        t.join();
    for (long s : sums)
        CHECK(s == 1990000);
    auto w = std::make_unique<Wide[]>(10);
    CHECK(reinterpret_cast<uintptr_t>(w.get()) % 256 == 0);
    int *big = new int[1 << 20]();
    CHECK(big[12345] == 0);
    delete[] big;
    bool threw = false;
    try {
        volatile size_t huge = static_cast<size_t>(-1) / 8;
        auto *p = new long[huge];
        delete[] p;
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    CHECK(threw);
    return failures;
}
