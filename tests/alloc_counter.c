/* An LD_PRELOAD allocation counter for tests/test_steady_state.py: it wraps the malloc family
 * and, while armed, counts the calls made on behalf of pyllm's extension (pyllm/_core*.so) or
 * oneDNN (libdnnl.so.3).
 *
 * A call is attributed by its return address: "direct" when it lies in one of those two objects
 * (pyllm_alloc -> posix_memalign, oneDNN's own malloc); "indirect" when it lies in a helper
 * library (libc, libstdc++, libgomp: oneDNN's C++ `new`, qsort's buffer, an OpenMP team) and the
 * first caller past the helpers, found by unwinding the stack, is one of our two objects. Calls
 * from anything else (Python, NumPy) are ignored. Code ranges are found once, when armed, so the
 * wrappers call nothing that could allocate (the unwinder only for helper-library callers,
 * guarded by a thread-local flag); dlsym's own calloc is served from a static buffer.
 *
 * Built by the test: cc -shared -fPIC -O2 alloc_counter.c -o alloc_counter.so -ldl -lgcc_s
 * Read from Python with ctypes (the alloc_counter_* functions at the end). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unwind.h>

enum { OBJ_CORE, OBJ_DNNL, N_OBJECTS };
enum { HOW_DIRECT, HOW_INDIRECT, N_HOWS };
enum { FN_MALLOC, FN_CALLOC, FN_REALLOC, FN_POSIX_MEMALIGN, FN_ALIGNED_ALLOC, FN_MEMALIGN, N_FNS };
static const char *const object_names[N_OBJECTS] = {"_core", "libdnnl"};
static const char *const fn_names[N_FNS] = {"malloc", "calloc", "realloc", "posix_memalign",
                                            "aligned_alloc", "memalign"};

/* ---- the real functions, and a static buffer for dlsym's own allocations ------------------- */

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);

static _Alignas(64) char boot_buffer[1 << 16];
static size_t boot_used;
static int resolving; /* set while dlsym runs: its calloc is served from boot_buffer */

static int from_boot(const void *p)
{
    return (const char *)p >= boot_buffer && (const char *)p < boot_buffer + sizeof boot_buffer;
}

static void *boot_alloc(size_t bytes)
{
    bytes = (bytes + 63) / 64 * 64;
    if (bytes > sizeof boot_buffer - boot_used)
        return NULL;
    void *p = boot_buffer + boot_used; /* zeroed: a static never handed out twice */
    boot_used += bytes;
    return p;
}

static void resolve(void)
{
    if (real_malloc != NULL)
        return;
    resolving = 1;
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_free = dlsym(RTLD_NEXT, "free");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = dlsym(RTLD_NEXT, "memalign");
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    resolving = 0;
}

__attribute__((constructor)) static void init(void) { resolve(); }

/* ---- where a call comes from ------------------------------------------------------------ */

typedef struct {
    uintptr_t lo, hi;
    int object; /* OBJ_*, or -1 for a helper library */
} code_range;

#define MAX_RANGES 32
static code_range ranges[MAX_RANGES];
static int n_ranges;
static atomic_int armed;
static _Thread_local int unwinding; /* the unwinder's own allocations are not looked into */

static int classify(uintptr_t pc)
{
    for (int i = 0; i < n_ranges; i++)
        if (pc >= ranges[i].lo && pc < ranges[i].hi)
            return ranges[i].object;
    return -2; /* anything else: Python, NumPy, ... */
}

typedef struct {
    int depth, in_helpers, object;
    uintptr_t pc; /* the deciding frame's */
} unwind_state;

/* Frames run: this library's own (note, the wrapper), then the helper libraries, then the caller
 * that decides: one of our objects, or anyone else. */
static _Unwind_Reason_Code unwind_step(struct _Unwind_Context *ctx, void *arg)
{
    unwind_state *s = arg;
    const int object = classify((uintptr_t)_Unwind_GetIP(ctx));
    if (object == -1)
        s->in_helpers = 1;
    else if (s->in_helpers) {
        s->object = object;
        s->pc = (uintptr_t)_Unwind_GetIP(ctx);
        return _URC_END_OF_STACK;
    }
    return ++s->depth > 32 ? _URC_END_OF_STACK : _URC_NO_REASON;
}

/* ---- counters ------------------------------------------------------------------------------ */

static atomic_long counts[N_OBJECTS][N_HOWS][N_FNS];
static atomic_long bytes_asked[N_OBJECTS];

/* Distinct call sites in our two objects (the return address, or for an indirect call the
 * frame that called the helper) with their counts. */
#define N_SITES 512
static _Atomic uintptr_t site_pc[N_SITES];
static atomic_long site_count[N_SITES];
static int site_fn[N_SITES], site_object[N_SITES], site_how[N_SITES];

static void note_site(uintptr_t pc, int fn, int object, int how)
{
    size_t h = (size_t)((pc >> 2) * 0x9E3779B97F4A7C15ull % N_SITES);
    for (size_t k = 0; k < N_SITES; k++) {
        const size_t i = (h + k) % N_SITES;
        uintptr_t seen = atomic_load(&site_pc[i]);
        if (seen == 0) {
            if (atomic_compare_exchange_strong(&site_pc[i], &seen, pc)) {
                site_fn[i] = fn;
                site_object[i] = object;
                site_how[i] = how;
            }
        }
        if (seen == 0 || seen == pc) {
            atomic_fetch_add(&site_count[i], 1);
            return;
        }
    }
}

static void note(void *return_address, int fn, size_t size)
{
    if (!atomic_load_explicit(&armed, memory_order_relaxed) || unwinding)
        return;
    uintptr_t pc = (uintptr_t)return_address;
    int object = classify(pc), how = HOW_DIRECT;
    if (object == -1) { /* a helper library: who called it? */
        unwind_state s = {0, 0, -2, 0};
        unwinding = 1;
        _Unwind_Backtrace(unwind_step, &s);
        unwinding = 0;
        object = s.object;
        pc = s.pc;
        how = HOW_INDIRECT;
    }
    if (object < 0)
        return;
    atomic_fetch_add(&counts[object][how][fn], 1);
    atomic_fetch_add(&bytes_asked[object], (long)size);
    note_site(pc, fn, object, how);
}

/* ---- the wrappers ------------------------------------------------------------------------ */

void *malloc(size_t size)
{
    if (real_malloc == NULL) {
        if (resolving)
            return boot_alloc(size);
        resolve();
    }
    note(__builtin_return_address(0), FN_MALLOC, size);
    return real_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    if (real_calloc == NULL) {
        if (resolving)
            return n != 0 && size > SIZE_MAX / n ? NULL : boot_alloc(n * size);
        resolve();
    }
    note(__builtin_return_address(0), FN_CALLOC, n * size);
    return real_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    if (from_boot(p)) { /* never given to the real allocator: move it out */
        void *q = malloc(size);
        const size_t left = (size_t)(boot_buffer + sizeof boot_buffer - (char *)p);
        if (q != NULL)
            memcpy(q, p, size < left ? size : left);
        return q;
    }
    if (real_realloc == NULL)
        resolve();
    note(__builtin_return_address(0), FN_REALLOC, size);
    return real_realloc(p, size);
}

void free(void *p)
{
    if (p == NULL || from_boot(p))
        return;
    if (real_free == NULL)
        resolve();
    real_free(p);
}

int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (real_posix_memalign == NULL)
        resolve();
    note(__builtin_return_address(0), FN_POSIX_MEMALIGN, size);
    return real_posix_memalign(out, alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size)
{
    if (real_aligned_alloc == NULL)
        resolve();
    note(__builtin_return_address(0), FN_ALIGNED_ALLOC, size);
    return real_aligned_alloc(alignment, size);
}

void *memalign(size_t alignment, size_t size)
{
    if (real_memalign == NULL)
        resolve();
    note(__builtin_return_address(0), FN_MEMALIGN, size);
    return real_memalign(alignment, size);
}

/* ---- the API the test calls ---------------------------------------------------------------- */

static int object_of(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    if (strncmp(base, "_core.", 6) == 0 && strstr(path, "pyllm") != NULL)
        return OBJ_CORE;
    if (strncmp(base, "libdnnl.so", 10) == 0)
        return OBJ_DNNL;
    if (strncmp(base, "libc.so", 7) == 0 || strncmp(base, "libstdc++.so", 12) == 0 ||
        strncmp(base, "libgomp.so", 10) == 0 || strncmp(base, "libgcc_s.so", 11) == 0)
        return -1;
    return -2;
}

static int add_ranges(struct dl_phdr_info *info, size_t size, void *found)
{
    (void)size;
    const int object = object_of(info->dlpi_name);
    if (object == -2)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || n_ranges == MAX_RANGES)
            continue;
        ranges[n_ranges].lo = info->dlpi_addr + ph->p_vaddr;
        ranges[n_ranges].hi = ranges[n_ranges].lo + ph->p_memsz;
        ranges[n_ranges].object = object;
        n_ranges++;
        if (object >= 0)
            *(int *)found |= 1 << object;
    }
    return 0;
}

void alloc_counter_reset(void)
{
    for (int o = 0; o < N_OBJECTS; o++) {
        for (int h = 0; h < N_HOWS; h++)
            for (int f = 0; f < N_FNS; f++)
                atomic_store(&counts[o][h][f], 0);
        atomic_store(&bytes_asked[o], 0);
    }
    for (int i = 0; i < N_SITES; i++) {
        atomic_store(&site_count[i], 0);
        atomic_store(&site_pc[i], 0);
    }
}

/* Find the objects' code (call it once pyllm is imported), zero the counts and start counting.
 * Returns a bitmask of the objects found: 1 = _core, 2 = libdnnl (3 = both). */
int alloc_counter_arm(void)
{
    atomic_store(&armed, 0);
    int found = 0;
    n_ranges = 0;
    dl_iterate_phdr(add_ranges, &found);
    alloc_counter_reset();
    atomic_store(&armed, 1);
    return found;
}

void alloc_counter_disarm(void) { atomic_store(&armed, 0); }

/* Calls counted since the last reset: object OBJ_* or -1 for both; how HOW_* or -1 for both. */
long alloc_counter_calls(int object, int how)
{
    long total = 0;
    for (int o = 0; o < N_OBJECTS; o++)
        for (int h = 0; h < N_HOWS; h++)
            for (int f = 0; f < N_FNS; f++)
                if ((object < 0 || object == o) && (how < 0 || how == h))
                    total += atomic_load(&counts[o][h][f]);
    return total;
}

/* A text summary into buf: calls per object, way and function, then every call site (the
 * return address, named by dladdr) with its count. Counting pauses while it is written. */
size_t alloc_counter_summary(char *buf, size_t len)
{
    const int was_armed = atomic_exchange(&armed, 0);
    size_t at = 0;
#define PUT(...)                                                                      \
    do {                                                                              \
        int put_ = snprintf(buf + at, at < len ? len - at : 0, __VA_ARGS__);          \
        if (put_ > 0)                                                                 \
            at += (size_t)put_;                                                       \
    } while (0)
    for (int o = 0; o < N_OBJECTS; o++)
        for (int h = 0; h < N_HOWS; h++)
            for (int f = 0; f < N_FNS; f++) {
                const long n = atomic_load(&counts[o][h][f]);
                if (n > 0)
                    PUT("%s %s %s: %ld\n", object_names[o], h == HOW_DIRECT ? "direct" : "indirect", fn_names[f], n);
            }
    for (int i = 0; i < N_SITES; i++) {
        const uintptr_t pc = atomic_load(&site_pc[i]);
        if (pc == 0)
            continue;
        Dl_info info;
        const char *file = "?", *sym = "?";
        uintptr_t off = pc;
        if (dladdr((void *)pc, &info) != 0) {
            file = info.dli_fname ? strrchr(info.dli_fname, '/') ? strrchr(info.dli_fname, '/') + 1
                                                                 : info.dli_fname
                                  : "?";
            if (info.dli_sname != NULL) {
                sym = info.dli_sname;
                off = pc - (uintptr_t)info.dli_saddr;
            } else {
                off = pc - (uintptr_t)info.dli_fbase;
            }
        }
        PUT("  %ld x %s %s for %s at %s!%s+0x%lx\n", atomic_load(&site_count[i]),
            site_how[i] == HOW_DIRECT ? "direct" : "indirect", fn_names[site_fn[i]], object_names[site_object[i]],
            file, sym, (unsigned long)off);
    }
#undef PUT
    if (len > 0)
        buf[at < len ? at : len - 1] = '\0';
    atomic_store(&armed, was_armed);
    return at;
}
