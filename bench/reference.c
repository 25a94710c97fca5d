/* Physical-limit reference for `fourtuple probe` (bench/side-by-side.sh builds it: gcc -O2).
 * usage: reference N LISTENERS [BASEPORT=7000]    env: HOLD_S (default 0), MAX_S (default 180)
 * Listeners on 127.0.0.1 never accept(): every connection waits in an accept queue (no server fd).
 * Children (<= 19,700 connections each, 2 ramping at a time) connect with 512 in flight and hold.
 * stdout: "t_ms held" every 100 ms, "HELD n ms", "ERR errno count", "CLOSED ms" (or "GAVEUP held ms").
 * CLOSED: from SIGKILL of the children until /proc/net/sockstat "TCP: inuse" <= its value before the run
 * + CLOSE_SLACK (env, default 16, for other programs' sockets). Exit: 0, 1 error, 2 MAX_S, 3 not back, 4 signal. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PER_CHILD 19700
#define INFLIGHT 512
#define MAXERR 160
typedef struct { volatile long held; volatile long err[MAXERR]; } stat_t; /* shared with children */

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }
static double now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
static long tcp_inuse(void) {
  char line[256]; long v = -1; FILE *f = fopen("/proc/net/sockstat", "r");
  while (f && fgets(line, sizeof line, f)) if (sscanf(line, "TCP: inuse %ld", &v) == 1) break;
  if (f) fclose(f);
  return v;
}
static long env_long(const char *k, long d) { const char *v = getenv(k); return v && *v ? atol(v) : d; }

/* Child: open connections [lo, hi) and hold them; connection i goes to ports[i / per]. */
static void child(int me, long lo, long hi, long per, const int *ports, stat_t *st, int donefd) {
  struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl); rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl);
  long n = hi - lo, done = 0, next = lo, inflight = 0, nretry = 0;
  long *retry = malloc(sizeof(long) * (n + 1));
  struct epoll_event ev, evs[INFLIGHT];
  struct linger lg = { 1, 0 };
  int ep = epoll_create1(0);
  while (done < n) {
    while (inflight < INFLIGHT && (nretry || next < hi)) {
      long i = nretry ? retry[--nretry] : next++;
      struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(ports[i / per]) };
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) { st->err[errno < MAXERR ? errno : 0]++; retry[nretry++] = i; break; }
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) { st->held = ++done; continue; }
      if (errno != EINPROGRESS) { st->err[errno < MAXERR ? errno : 0]++; close(fd); retry[nretry++] = i; break; }
      ev.events = EPOLLOUT; ev.data.u64 = ((unsigned long)i << 32) | (unsigned)fd;
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev); inflight++;
    }
    int k = epoll_wait(ep, evs, INFLIGHT, 100);
    for (int j = 0; j < k; j++) {
      int fd = (int)(evs[j].data.u64 & 0xffffffffu), e = 0; socklen_t el = sizeof e;
      long i = (long)(evs[j].data.u64 >> 32);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
      epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL); inflight--;
      if (e == 0) { st->held = ++done; continue; }
      st->err[e < MAXERR ? e : 0]++; close(fd); retry[nretry++] = i;
    }
  }
  free(retry); close(ep);
  if (write(donefd, &me, sizeof me) < 0) _exit(1);
  for (;;) pause(); /* hold until SIGKILL (or the parent's death: PR_SET_PDEATHSIG) */
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: %s N LISTENERS [BASEPORT=7000]  (env HOLD_S, MAX_S)\n", argv[0]); return 64; }
  long N = atol(argv[1]), L = atol(argv[2]), base = argc > 3 ? atol(argv[3]) : 7000;
  long hold_s = env_long("HOLD_S", 0), max_s = env_long("MAX_S", 180), somax = 4096;
  FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
  if (f) { if (fscanf(f, "%ld", &somax) != 1) somax = 4096; fclose(f); }
  if (N < 1 || L < 1) { fprintf(stderr, "N and LISTENERS must be >= 1\n"); return 64; }
  long per = (N + L - 1) / L;
  if (per > somax) { fprintf(stderr, "%ld per listener > somaxconn %ld: use at least %ld listeners\n", per, somax, (N + somax - 1) / somax); return 64; }
  L = (N + per - 1) / per; /* listeners actually needed */
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct sigaction sa = { .sa_handler = on_sig }; sigaction(SIGINT, &sa, NULL); sigaction(SIGTERM, &sa, NULL);
  long baseline = tcp_inuse();
  int *lfd = calloc(L, sizeof(int)), *ports = calloc(L, sizeof(int)), one = 1, rc = 0;
  long nl = 0;
  for (long p = base; nl < L && p < 32768; p++) {
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(p) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 65535) == 0) { lfd[nl] = fd; ports[nl++] = p; continue; }
    if (errno != EADDRINUSE) { perror("listen"); return 1; }
    close(fd);
  }
  if (nl < L) { fprintf(stderr, "only %ld free ports from %ld below 32768, need %ld\n", nl, base, L); return 1; }
  long nch = (N + PER_CHILD - 1) / PER_CHILD, running = 0, spawned = 0, finished = 0;
  stat_t *st = mmap(NULL, sizeof(stat_t) * nch, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pid_t *pids = calloc(nch, sizeof(pid_t)), parent = getpid();
  int pp[2]; if (pipe2(pp, O_CLOEXEC) < 0) { perror("pipe"); return 1; }
  double t0 = now_ms(), next_tick = t0 + 100;
  while (finished < nch && !stop) {
    while (running < 2 && spawned < nch) {
      fflush(stdout);
      pid_t c = fork();
      if (c == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        signal(SIGINT, SIG_IGN); signal(SIGTERM, SIG_IGN);
        for (long j = 0; j < nl; j++) close(lfd[j]);
        close(pp[0]);
        long lo = spawned * PER_CHILD, hi = lo + PER_CHILD < N ? lo + PER_CHILD : N;
        child((int)spawned, lo, hi, per, ports, &st[spawned], pp[1]);
      }
      if (c < 0) { perror("fork"); stop = 1; rc = 1; break; }
      pids[spawned++] = c; running++;
    }
    struct pollfd pf = { .fd = pp[0], .events = POLLIN };
    int wait = (int)(next_tick - now_ms()); if (wait < 0) wait = 0;
    if (poll(&pf, 1, wait) > 0) { int who; if (read(pp[0], &who, sizeof who) == sizeof who) { running--; finished++; } }
    double t = now_ms();
    long held = 0; for (long j = 0; j < spawned; j++) held += st[j].held;
    if (t >= next_tick || finished == nch) { printf("%.0f %ld\n", t - t0, held); while (next_tick <= t) next_tick += 100; }
    int status; pid_t dead = waitpid(-1, &status, WNOHANG);
    if (dead > 0) { fprintf(stderr, "child %d died (status %d)\n", dead, status); rc = 1; break; }
    if (t - t0 > max_s * 1e3) { fprintf(stderr, "time bound %ld s reached\n", max_s); rc = 2; break; }
  }
  long held = 0; for (long j = 0; j < spawned; j++) held += st[j].held;
  if (finished < nch && !rc) rc = 4; /* SIGINT/SIGTERM during the ramp */
  if (finished == nch) printf("HELD %ld %.0f\n", held, now_ms() - t0);
  else printf("GAVEUP %ld %.0f\n", held, now_ms() - t0);
  for (int e = 0; e < MAXERR; e++) { long c = 0; for (long j = 0; j < spawned; j++) c += st[j].err[e]; if (c) printf("ERR %s %ld\n", e ? strerrorname_np(e) : "other", c); }
  for (double until = now_ms() + hold_s * 1e3; finished == nch && !stop && now_ms() < until;) poll(NULL, 0, 50);
  double c0 = now_ms();
  for (long j = 0; j < spawned; j++) kill(pids[j], SIGKILL);
  for (long j = 0; j < nl; j++) close(lfd[j]);
  for (long j = 0; j < spawned; j++) waitpid(pids[j], NULL, 0);
  long inuse = tcp_inuse(), slack = env_long("CLOSE_SLACK", 16);
  while (inuse > baseline + slack && now_ms() - c0 < 120e3) { poll(NULL, 0, 50); inuse = tcp_inuse(); }
  printf("CLOSED %.0f\n", now_ms() - c0);
  if (inuse > baseline + slack) { fprintf(stderr, "TCP inuse %ld, baseline %ld: not back after 120 s\n", inuse, baseline); rc = rc ? rc : 3; }
  return rc;
}
