// What a system call costs, in ns: N getppid() calls in a loop (the cheapest call there is), timed with
// CLOCK_MONOTONIC. Run with and without the failure tracer's bind() program attached (it runs at every
// system call's exit, and attaching it moves every call onto the kernel's traced path): the difference is
// what each system call of every process pays while the exporter runs. Usage: syscall-cost [N]
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 20000000;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (long i = 0; i < n; i++) syscall(SYS_getppid);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
  printf("%.1f ns per system call (%ld calls)\n", ns / n, n);
  return 0;
}
