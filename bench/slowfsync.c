/*
 * An LD_PRELOAD shim that adds SLOWFSYNC_US microseconds to every fsync and
 * fdatasync after it returns: a slow disk (SD card, eMMC, network volume) on a
 * fast one, for bench/RESULTS.md "Pipelined log writes". Build and use:
 *   gcc -shared -fPIC -O2 -o /tmp/slowfsync.so bench/slowfsync.c -ldl
 *   SLOWFSYNC_US=5000 LD_PRELOAD=/tmp/slowfsync.so bun run bench/profile.ts ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static long delay_us(void) { const char *s = getenv("SLOWFSYNC_US"); return s ? atol(s) : 0; }
static void pause_us(long us) { if (us <= 0) return; struct timespec t = { us / 1000000, (us % 1000000) * 1000 }; nanosleep(&t, 0); }
int fsync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fsync"); int r = real(fd); pause_us(delay_us()); return r; }
int fdatasync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fdatasync"); int r = real(fd); pause_us(delay_us()); return r; }
