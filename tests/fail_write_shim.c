/* LD_PRELOAD shim for tests: write(2) of more than DL_FAIL_WRITES_OVER bytes fails with ENOSPC, as
 * on a full disk. Built by tests/test_train.cpp with the system C compiler; never linked into the
 * library or the programs. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

ssize_t write(int fd, const void* buf, size_t n) {
    static ssize_t (*real_write)(int, const void*, size_t) = 0;
    if (!real_write) real_write = (ssize_t(*)(int, const void*, size_t))dlsym(RTLD_NEXT, "write");
    const char* limit = getenv("DL_FAIL_WRITES_OVER");
    if (limit && n > (size_t)strtoull(limit, 0, 10)) {
        errno = ENOSPC;
        return -1;
    }
    return real_write(fd, buf, n);
}
