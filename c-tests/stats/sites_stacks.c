/* sites_stacks: call sites recorded on stacks that are not the thread's
 * own, where the frame pointer points at memory that is not mapped.
 *
 *   on a coroutine (makecontext) whose 64 KiB stack is followed by an
 *   unmapped hole, COROUTINE refused requests inside NORECLAIM;
 *   in a SIGUSR1 handler running on an alternate stack followed by such a
 *   hole, HANDLER refused requests inside a NORECLAIM scope the handler
 *   pushes.
 *
 *   on the main thread, FAKE refused requests with rbp pointing at a
 *   16-byte aligned pair on the stack that looks like a frame: its
 *   "return address" is a function's first byte (a callback in a struct)
 *   or a heap pointer. memscope-stat must not show either as a caller.
 *
 * Each request is made through call_with_rbp, which sets rbp to an address
 * in the hole (what optimised code without frame pointers may leave there)
 * and calls malloc. memscope must not read that address: the call site is
 * recorded (call_with_rbp's call), its callers are not (or, for the
 * fake frame, are not shown), and the program exits 0. (Before the walk checked which stack it is on, the first
 * refusal died of SIGSEGV in sites::capture.)
 *
 * Then prints "ready" and waits for stdin to close, so that the runner
 * reads the segment of a live process. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

#define STACK (64u << 10)
#define COROUTINE 5
#define HANDLER 7
#define FAKE 3

/* call_with_rbp(f, arg, rbp): f(arg) with rbp set to `rbp` during the call. */
void *call_with_rbp(void *(*f)(size_t), size_t arg, void *rbp);
__asm__(".text\n"
        ".globl call_with_rbp\n"
        ".type call_with_rbp,@function\n"
        "call_with_rbp:\n"
        "    push %rbp\n"
        "    mov %rdx, %rbp\n"
        "    mov %rdi, %rax\n"
        "    mov %rsi, %rdi\n"
        "    call *%rax\n"
        "    pop %rbp\n"
        "    ret\n"
        ".size call_with_rbp, .-call_with_rbp\n");

/* A stack of STACK bytes with an unmapped hole of STACK bytes above it;
 * `*hole` is a 16-byte aligned address in the hole. */
static char *stack_with_hole(char **hole)
{
    char *m = mmap(NULL, 2 * STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    CHECK(munmap(m + STACK, STACK) == 0);
    *hole = m + STACK + 4096;
    return m;
}

static void *(*volatile alloc_fn)(size_t) = malloc;

/* Never called: only its address is used. */
__attribute__((noinline)) void decoy(void)
{
    puts("decoy");
}
static char *coroutine_hole, *handler_hole;
static ucontext_t main_uc, co_uc;
static int coroutine_refused;
static volatile sig_atomic_t handler_refused;

static void coroutine(void)
{
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < COROUTINE; i++)
        if (call_with_rbp(alloc_fn, 8u << 20, coroutine_hole) == NULL)
            coroutine_refused++;
    memscope_pop(s);
}

static void on_usr1(int sig)
{
    (void)sig;
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < HANDLER; i++)
        if (call_with_rbp(alloc_fn, 8u << 20, handler_hole) == NULL)
            handler_refused++;
    memscope_pop(s);
}

int main(void)
{
    CHECK(memscope_loaded());
    /* The first push sets up the pool (outside any handler). */
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM));

    char *co_stack = stack_with_hole(&coroutine_hole);
    CHECK(getcontext(&co_uc) == 0);
    co_uc.uc_stack.ss_sp = co_stack;
    co_uc.uc_stack.ss_size = STACK;
    co_uc.uc_link = &main_uc;
    makecontext(&co_uc, coroutine, 0);
    CHECK(swapcontext(&main_uc, &co_uc) == 0);
    CHECK(coroutine_refused == COROUTINE);

    stack_t alt = {.ss_sp = stack_with_hole(&handler_hole), .ss_size = STACK};
    CHECK(sigaltstack(&alt, NULL) == 0);
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(handler_refused == HANDLER);

    /* A frame in appearance only: a function's address, then a heap
     * pointer, where a return address would be. */
    struct fake_frame {
        uintptr_t next;
        uintptr_t ret;
    } __attribute__((aligned(16))) fake = {0, 0};
    void *heap = malloc(64);
    int fake_refused = 0;
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < 2 * FAKE; i++) {
        fake.ret = i < FAKE ? (uintptr_t)decoy : (uintptr_t)heap;
        if (call_with_rbp(alloc_fn, 8u << 20, &fake) == NULL)
            fake_refused++;
    }
    memscope_pop(s);
    CHECK(fake_refused == 2 * FAKE);
    free(heap);

    return ready_then_wait();
}
