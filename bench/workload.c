/*
 * Workloads for `cargo xtask bench`, compiled with gcc at bench time.
 *
 *   workload UID:GID open N PATH      open(PATH, O_RDONLY) + close, N times
 *   workload UID:GID files N PATH     open(PATH.I % 8, O_RDONLY) + close for I in 0..N-1:
 *                                     eight files in turn, more than guard's kernel
 *                                     counts repeats of per thread (4), so that every
 *                                     open is judged and recorded
 *   workload UID:GID forkexec N       fork + exec /bin/true + wait, N times
 *   workload UID:GID connect N PORT   TCP connect to 127.0.0.1:PORT + close, N times
 *   workload UID:GID git N DIR        in the git repository DIR, N times:
 *                                     git checkout -q b; git checkout -q a;
 *                                     git status --porcelain
 *   workload UID:GID build N DIR      in DIR, gcc -O2 -c mI.c -o mI.o for I in 0..N-1
 *   workload UID:GID fetch N DIR PORT K ETC
 *                                     a build that resolves names: first (as root)
 *                                     a private mount namespace where ETC/resolv.conf
 *                                     and ETC/nsswitch.conf stand for /etc's (the
 *                                     bench's DNS server, DNS only); then in DIR, for
 *                                     I in 0..N-1: curl fetches
 *                                     http://deps.bench.example:PORT/mJ.c (J = I % K)
 *                                     to fI.c, resolving the name each time, and
 *                                     gcc -O2 -c fI.c -o fI.o
 *   workload UID:GID cargo N DIR TOOLCHAIN
 *                                     in the crate DIR (dependencies vendored):
 *                                     TOOLCHAIN/bin/cargo build --offline into
 *                                     target/I for I in 0..N-1 (target/ removed
 *                                     before the clock starts): N clean builds
 *   workload UID:GID npm N DIR        in the npm project DIR, N times:
 *                                     npm ci --offline (from $HOME/.npm); npm test
 *   workload UID:GID codex N DIR CODEX NETPID OUT
 *                                     joins the network namespace of process NETPID
 *                                     (the bench's scripted model, `guard-model`),
 *                                     then N times: CODEX exec
 *                                     --dangerously-bypass-hook-trust --sandbox
 *                                     workspace-write -C DIR -o OUT (the real Codex
 *                                     CLI); each run must exit 0 and leave the model's
 *                                     final message in OUT
 *   workload UID:GID bulk N PORT      TCP upload of N MiB to 127.0.0.1:PORT (1 MiB writes)
 *   workload UID:GID dns N ADDR       a DNS query (A, bench.example) on a UDP socket
 *                                     connected to ADDR:53, and its answer, N times:
 *                                     what a resolver library does (in a session,
 *                                     the kernel points it at guard's resolver)
 *   workload UID:GID unix N DIR       sendmsg of one byte to a Unix datagram socket the
 *                                     process bound in DIR (by its name), then recv it,
 *                                     N times
 *   workload UID:GID gen RATE SECS K PATH
 *                                     capacity generator: K processes open+close
 *                                     PATH.0 .. PATH.7 in turn at RATE opens per
 *                                     second (in total) for SECS: more files than
 *                                     guard's kernel counts repeats of per thread
 *                                     (4), so that every open is a record
 *
 * The process first drops to UID:GID (no supplementary groups), so every setup runs
 * the same process under the same credentials and the peers (auditd, opensnoop,
 * execsnoop, bpftrace) can filter the workload and all its descendants in the
 * kernel by that uid. With GBENCH_CPU=N in the environment it first pins itself
 * (and so its children) to CPU N.
 *
 * Prints the seconds the loop took (CLOCK_MONOTONIC) on stdout; for `gen`, the
 * opens done and the seconds taken. Exits non-zero on any failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "workload: %s: %s\n", what, strerror(errno));
    exit(1);
}

static long arg_long(const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) {
        fprintf(stderr, "workload: bad number: %s\n", s);
        exit(2);
    }
    return v;
}

static void drop_to(const char *ids) {
    char *end;
    errno = 0;
    unsigned long uid = strtoul(ids, &end, 10);
    unsigned long gid = uid;
    if (*end == ':') gid = strtoul(end + 1, &end, 10);
    if (errno || *end) {
        fprintf(stderr, "workload: bad UID:GID: %s\n", ids);
        exit(2);
    }
    if (uid == 0) return;
    if (setgroups(0, NULL) != 0) die("setgroups");
    if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) die("setresgid");
    if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) die("setresuid");
}

static void pin(void) {
    const char *cpu = getenv("GBENCH_CPU");
    if (!cpu || !*cpu) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET((int)arg_long(cpu), &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

static void open_loop(long n, const char *path) {
    for (long i = 0; i < n; i++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) die("open");
        close(fd);
    }
}

/* The eight files `PATH.0` .. `PATH.7` (the bench makes them) that `files` and `gen`
 * open in turn. */
enum { FILES = 8 };
typedef char file_set[FILES][4096];

static void file_names(file_set paths, const char *path) {
    for (int j = 0; j < FILES; j++)
        if (snprintf(paths[j], sizeof paths[j], "%s.%d", path, j) >= (int)sizeof paths[j])
            die("path too long");
}

static void files_loop(long n, const char *path) {
    static file_set paths;
    file_names(paths, path);
    for (long i = 0; i < n; i++) {
        int fd = open(paths[i % FILES], O_RDONLY | O_CLOEXEC);
        if (fd < 0) die("open");
        close(fd);
    }
}

static void forkexec_loop(long n) {
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            execl("/bin/true", "true", (char *)NULL);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0) die("waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "workload: /bin/true failed (status %d)\n", status);
            exit(1);
        }
    }
}

static void connect_loop(long n, int port) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Reset on close: no TIME_WAIT, so ephemeral ports never run out. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    for (long i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0) die("setsockopt");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
        close(fd);
    }
}

/* N one-byte UDP datagrams from one unconnected socket to K distinct loopback
 * destinations in turn (127.77.X.Y, port 9): nothing listens there, so the kernel
 * drops them (an unconnected socket is told of no ICMP error). */
static void sendto_loop(long n, long k) {
    if (k < 1 || k > 250L * 250L) die("destinations (1 to 62500)");
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    const char byte = 0;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(9);
    for (long i = 0; i < n; i++) {
        unsigned d = (unsigned)(i % k);
        addr.sin_addr.s_addr = htonl(127u << 24 | 77u << 16 | (d / 250) << 8 | (d % 250 + 1));
        if (sendto(fd, &byte, 1, 0, (struct sockaddr *)&addr, sizeof addr) != 1) die("sendto");
    }
    close(fd);
}

/* Uploads n MiB over one TCP connection to the loopback sink, then closes. */
static void bulk_loop(long n, int port) {
    static char buf[1 << 20];
    memset(buf, 0x5a, sizeof buf);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
    for (long i = 0; i < n; i++) {
        size_t off = 0;
        while (off < sizeof buf) {
            ssize_t w = write(fd, buf + off, sizeof buf - off);
            if (w < 0) die("write");
            off += (size_t)w;
        }
    }
    close(fd);
}

/* N DNS queries (A, bench.example) to addr:53 over one connected UDP socket, each
 * answered before the next: the answer must be a response to it with an address. */
static void dns_loop(long n, const char *addr_text) {
    static const unsigned char name[] = "\5bench\7example";
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(53);
    if (inet_pton(AF_INET, addr_text, &addr.sin_addr) != 1) die("dns address");
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
    unsigned char q[64], a[512];
    for (long i = 0; i < n; i++) {
        size_t len = 0;
        unsigned short id = (unsigned short)i;
        q[len++] = (unsigned char)(id >> 8);
        q[len++] = (unsigned char)id;
        q[len++] = 0x01; /* RD */
        q[len++] = 0x00;
        q[len++] = 0; q[len++] = 1; /* QDCOUNT */
        memset(q + len, 0, 6);
        len += 6;
        memcpy(q + len, name, sizeof name); /* with the root label's 0 */
        len += sizeof name;
        q[len++] = 0; q[len++] = 1; /* A */
        q[len++] = 0; q[len++] = 1; /* IN */
        if (send(fd, q, len, 0) != (ssize_t)len) die("send");
        ssize_t got = recv(fd, a, sizeof a, 0);
        if (got < 12) die("recv");
        if (a[0] != q[0] || a[1] != q[1] || !(a[2] & 0x80) || (a[3] & 0x0f) != 0 ||
            (a[6] == 0 && a[7] == 0)) {
            fprintf(stderr, "workload: DNS answer %ld is not an address (rcode %d)\n", i,
                    a[3] & 0x0f);
            exit(1);
        }
    }
    close(fd);
}

static void unix_loop(long n, const char *dir) {
    struct sockaddr_un addr = {0};
    addr.sun_family = AF_UNIX;
    if (snprintf(addr.sun_path, sizeof addr.sun_path, "%s/gbench-unix-%d.sock", dir,
                 (int)getpid()) >= (int)sizeof addr.sun_path)
        die("socket path too long");
    int rx = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int tx = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (rx < 0 || tx < 0) die("socket");
    unlink(addr.sun_path);
    if (bind(rx, (struct sockaddr *)&addr, sizeof addr) != 0) die("bind");
    char byte = 'x';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {0};
    msg.msg_name = &addr;
    msg.msg_namelen = sizeof addr;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    for (long i = 0; i < n; i++) {
        if (sendmsg(tx, &msg, 0) != 1) die("sendmsg");
        char got;
        if (recv(rx, &got, 1, 0) != 1) die("recv");
    }
    close(tx);
    close(rx);
    unlink(addr.sun_path);
}

/* Runs argv in dir (stdout to /dev/null unless `quiet` is 0) and waits; exits if it
 * fails. */
static void run_in(const char *dir, char *const argv[], int quiet) {
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        if (quiet) {
            int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
            if (null >= 0) dup2(null, 1);
        }
        if (chdir(dir) != 0) _exit(126);
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "workload: %s %s failed (status %d)\n", argv[0], argv[1], status);
        exit(1);
    }
}

static void build_loop(long n, const char *dir) {
    for (long i = 0; i < n; i++) {
        char src[32], obj[32];
        snprintf(src, sizeof src, "m%ld.c", i);
        snprintf(obj, sizeof obj, "m%ld.o", i);
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            if (chdir(dir) != 0) _exit(126);
            execlp("gcc", "gcc", "-O2", "-c", src, "-o", obj, (char *)NULL);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0) die("waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "workload: gcc %s failed (status %d)\n", src, status);
            exit(1);
        }
    }
}

/* A private mount namespace in which ETC/resolv.conf and ETC/nsswitch.conf stand for
 * /etc's: names resolve through the bench's DNS server only (before dropping root). */
static void private_resolver(const char *etc) {
    if (unshare(CLONE_NEWNS) != 0) die("unshare(CLONE_NEWNS)");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) die("mount --make-rprivate /");
    static const char *const files[] = {"resolv.conf", "nsswitch.conf"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char from[4096], to[64];
        snprintf(from, sizeof from, "%s/%s", etc, files[i]);
        snprintf(to, sizeof to, "/etc/%s", files[i]);
        if (mount(from, to, NULL, MS_BIND, NULL) != 0) die(to);
    }
}

/* N steps of a build that fetches its sources by name: curl (glibc's resolver: A and
 * AAAA queries) then gcc. */
static void fetch_loop(long n, const char *dir, long port, long k) {
    if (k < 1) k = 1;
    for (long i = 0; i < n; i++) {
        char url[128], src[32], obj[32];
        snprintf(url, sizeof url, "http://deps.bench.example:%ld/m%ld.c", port, i % k);
        snprintf(src, sizeof src, "f%ld.c", i);
        snprintf(obj, sizeof obj, "f%ld.o", i);
        char *curl[] = {"curl", "-sSf", "-o", src, url, NULL};
        char *gcc[] = {"gcc", "-O2", "-c", src, "-o", obj, NULL};
        run_in(dir, curl, 1);
        run_in(dir, gcc, 1);
    }
}

static void git_loop(long n, const char *dir) {
    char *to_b[] = {"git", "checkout", "-q", "b", NULL};
    char *to_a[] = {"git", "checkout", "-q", "a", NULL};
    char *status[] = {"git", "status", "--porcelain", NULL};
    for (long i = 0; i < n; i++) {
        run_in(dir, to_b, 1);
        run_in(dir, to_a, 1);
        run_in(dir, status, 1);
    }
}

/* Before the clock: the cargo workload's earlier target directories go. */
static void cargo_clean(const char *dir) {
    char *rm[] = {"rm", "-rf", "target", NULL};
    run_in(dir, rm, 1);
}

/* N clean debug builds of the crate in DIR (its dependencies vendored, offline), each
 * into a target directory of its own, by TOOLCHAIN's cargo and rustc. */
static void cargo_loop(long n, const char *dir, const char *toolchain) {
    static char cargo[4096], rustc[4096];
    if (snprintf(cargo, sizeof cargo, "%s/bin/cargo", toolchain) >= (int)sizeof cargo ||
        snprintf(rustc, sizeof rustc, "%s/bin/rustc", toolchain) >= (int)sizeof rustc)
        die("toolchain path too long");
    if (setenv("RUSTC", rustc, 1) != 0) die("setenv");
    for (long i = 0; i < n; i++) {
        char target[32];
        snprintf(target, sizeof target, "target/%ld", i);
        char *build[] = {cargo, "build", "--offline", "--quiet", "--target-dir", target, NULL};
        run_in(dir, build, 1);
    }
}

/* N times in the npm project DIR: `npm ci` from the cache (offline, node_modules
 * removed and installed again from package-lock.json), then `npm test`. */
static void npm_loop(long n, const char *dir) {
    char *ci[] = {"npm", "ci", "--offline", "--no-audit", "--no-fund", "--loglevel=error", NULL};
    char *test[] = {"npm", "test", "--silent", NULL};
    for (long i = 0; i < n; i++) {
        run_in(dir, ci, 1);
        run_in(dir, test, 1);
    }
}

/* Joins the network namespace of process `pid` (before dropping root). */
static void join_netns(const char *pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/ns/net", arg_long(pid));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(path);
    if (setns(fd, CLONE_NEWNET) != 0) die("setns");
    close(fd);
}

/* What the bench's scripted model says once Codex ran every command (guard-model's
 * FINAL_MESSAGE). */
static const char CODEX_DONE[] = "every scripted command ran";

/* N runs of the real Codex CLI in DIR: the scripted model has it run its commands one
 * per turn, then end the turn with CODEX_DONE, which Codex writes to OUT. */
static void codex_loop(long n, const char *dir, const char *codex, const char *out) {
    /* --dangerously-bypass-hook-trust: the user-level hooks.json that `cargo xtask bench
     * --codex-hooks` writes (guard's hook) runs with no review; without one it does
     * nothing. */
    char *argv[] = {(char *)codex, "exec", "--dangerously-bypass-hook-trust", "--sandbox",
                    "workspace-write", "--color", "never", "-C", (char *)dir, "-o", (char *)out,
                    "Run the scripted commands.", NULL};
    for (long i = 0; i < n; i++) {
        if (unlink(out) != 0 && errno != ENOENT) die("unlink");
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            int null = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (null >= 0) {
                dup2(null, 0);
                dup2(null, 1);
            }
            if (chdir(dir) != 0) _exit(126);
            execv(codex, argv);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0) die("waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "workload: codex exec failed (status %d)\n", status);
            exit(1);
        }
        char said[512] = {0};
        FILE *f = fopen(out, "r");
        if (!f) die("codex left no last message");
        size_t got = fread(said, 1, sizeof said - 1, f);
        fclose(f);
        said[got] = 0;
        if (!strstr(said, CODEX_DONE)) {
            fprintf(stderr, "workload: codex ended with %s, not the script's end\n", said);
            exit(1);
        }
    }
}

/* One generator process: `rate` opens per second for `secs` seconds, paced in
 * batches so the kernel sees a steady stream. Returns the opens done. */
static long gen_one(double rate, double secs, const char *path) {
    const long batch = 32;
    static file_set paths;
    file_names(paths, path);
    double start = now();
    double end = start + secs;
    long done = 0;
    for (;;) {
        double t = now();
        if (t >= end) break;
        double due = start + (double)(done + batch) / rate;
        if (due > t) {
            double wait = due - t;
            struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
            continue;
        }
        for (long i = 0; i < batch; i++) {
            int fd = open(paths[(done + i) % FILES], O_RDONLY | O_CLOEXEC);
            if (fd < 0) die("open");
            close(fd);
        }
        done += batch;
    }
    return done;
}

static void gen(double rate, double secs, long k, const char *path) {
    int fds[2];
    if (pipe(fds) != 0) die("pipe");
    double start = now();
    for (long i = 0; i < k; i++) {
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            close(fds[0]);
            long done = gen_one(rate / (double)k, secs, path);
            if (write(fds[1], &done, sizeof done) != sizeof done) _exit(1);
            _exit(0);
        }
    }
    close(fds[1]);
    long total = 0, one;
    while (read(fds[0], &one, sizeof one) == sizeof one) total += one;
    int status, failed = 0;
    while (wait(&status) > 0)
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
    if (failed) {
        fprintf(stderr, "workload: a generator process failed\n");
        exit(1);
    }
    printf("%ld %.6f\n", total, now() - start);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: workload UID:GID open|files|forkexec|connect|sendto|dns|git|build|fetch|cargo|npm|codex|bulk|unix|gen N [ARGS]\n");
        return 2;
    }
    pin();
    if (strcmp(argv[2], "codex") == 0 && argc == 8) join_netns(argv[6]);
    if (strcmp(argv[2], "fetch") == 0 && argc == 8) private_resolver(argv[7]);
    drop_to(argv[1]);
    const char *mode = argv[2];
    if (strcmp(mode, "gen") == 0) {
        if (argc != 7) {
            fprintf(stderr, "usage: workload UID:GID gen RATE SECS K PATH\n");
            return 2;
        }
        gen((double)arg_long(argv[3]), (double)arg_long(argv[4]), arg_long(argv[5]), argv[6]);
        return 0;
    }
    long n = arg_long(argv[3]);
    if (strcmp(mode, "cargo") == 0 && argc == 6) cargo_clean(argv[4]);
    double start = now();
    if (strcmp(mode, "open") == 0 && argc == 5) {
        open_loop(n, argv[4]);
    } else if (strcmp(mode, "files") == 0 && argc == 5) {
        files_loop(n, argv[4]);
    } else if (strcmp(mode, "forkexec") == 0 && argc == 4) {
        forkexec_loop(n);
    } else if (strcmp(mode, "connect") == 0 && argc == 5) {
        connect_loop(n, (int)arg_long(argv[4]));
    } else if (strcmp(mode, "sendto") == 0 && argc == 5) {
        sendto_loop(n, arg_long(argv[4]));
    } else if (strcmp(mode, "bulk") == 0 && argc == 5) {
        bulk_loop(n, (int)arg_long(argv[4]));
    } else if (strcmp(mode, "dns") == 0 && argc == 5) {
        dns_loop(n, argv[4]);
    } else if (strcmp(mode, "unix") == 0 && argc == 5) {
        unix_loop(n, argv[4]);
    } else if (strcmp(mode, "git") == 0 && argc == 5) {
        git_loop(n, argv[4]);
    } else if (strcmp(mode, "build") == 0 && argc == 5) {
        build_loop(n, argv[4]);
    } else if (strcmp(mode, "fetch") == 0 && argc == 8) {
        fetch_loop(n, argv[4], arg_long(argv[5]), arg_long(argv[6]));
    } else if (strcmp(mode, "cargo") == 0 && argc == 6) {
        cargo_loop(n, argv[4], argv[5]);
    } else if (strcmp(mode, "npm") == 0 && argc == 5) {
        npm_loop(n, argv[4]);
    } else if (strcmp(mode, "codex") == 0 && argc == 8) {
        codex_loop(n, argv[4], argv[5], argv[7]);
    } else {
        fprintf(stderr, "workload: bad arguments for %s\n", mode);
        return 2;
    }
    printf("%.6f\n", now() - start);
    return 0;
}
