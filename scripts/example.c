/*
 * example.c - calling iotinvoke from C, the way a program on an IoT board should.
 *
 * What it shows:
 *   - running iotinvoke as "python3 -m iotinvoke" (the fastest form: the module's compiled
 *     bytecode is reused, see README) with posix_spawnp() (no shell, no fork+exec by hand), its
 *     folder first on the child's PYTHONPATH, its standard input, output and error connected to
 *     pipes through posix_spawn_file_actions;
 *   - keeping folders other users can write off the child's module path: "python3 -m" puts the
 *     working directory first on it, where a planted urllib3.py or iotinvoke.py would run with
 *     our rights, so the child starts in "/" and with PYTHONSAFEPATH=1 (Python 3.11+ then leaves
 *     the working directory out), and relative -p, -d, -s and -c are made absolute first;
 *   - passing the JSON payload on iotinvoke's standard input while reading its standard output
 *     and standard error at the same time with poll(), so that no pipe buffer can fill up and
 *     deadlock the two processes, whatever the sizes (EINTR and EPIPE handled);
 *   - reading the response payload into a growing buffer, bounded at 7 MiB (Lambda answers
 *     are at most 6 MB), and keeping the last line of standard error (bounded) for the log;
 *   - branching on the exit status with the <sysexits.h> names:
 *       0            the response payload, printed on standard output;
 *       1            the function raised: its error payload, printed on standard output;
 *       EX_TEMPFAIL  (75) transient: run again after the wait iotinvoke's line asks for (its
 *                    last "[reason; retry after N s]", at most -w seconds), else after 1, 2, 4
 *                    ... s (plus jitter), at most -r times (default 3);
 *       EX_IOERR     (74) the invoke was sent but its answer was lost: the function may have
 *                    run, so it is NOT run again; whoever called us must decide;
 *       other        a failure that retrying won't fix: iotinvoke's stderr line is shown;
 *       EX_UNAVAILABLE (69) also when iotinvoke could not be started at all: the interpreter is
 *                    missing (spawn failed, or exit status 126/127 from a wrapper that could
 *                    not exec it), Python refused before running anything (exit status 2: no
 *                    such script, a bad option), or a module is missing ("No module named":
 *                    iotinvoke itself under -m, or urllib3/botocore/certifi; Python exits 1).
 *                    iotinvoke never exits 2, 126 or 127, and its exit status 1 (the function
 *                    raised) always comes with its own line, "iotinvoke: lambda: ...", last on
 *                    standard error: an exit status 1 without it is Python's, not the function's
 *                    (a crash without "No module named": EX_SOFTWARE, 70).
 *
 *   - with -a SOCKET, asking iotinvoke's agent ("python3 -m iotinvoke --serve", one warm process
 *     for the whole board) over its Unix socket instead of starting Python at every call: the
 *     same answer, the same exit status, at a small fraction of the CPU; when nothing listens
 *     there (no socket file, connection refused), running iotinvoke as above.
 *
 * Usage:
 *   example [-a SOCKET] [-p PYTHON] [-d DIR | -s SCRIPT] [-c CONFIG] [-r RETRIES] [-w SECONDS]
 *           [-t SECONDS] ENV [PAYLOAD]
 *
 *   ENV        the environment (a section of iotinvoke's config file), e.g. dev
 *   PAYLOAD    the JSON payload; "-" or absent: read it from standard input
 *   -p PYTHON  the Python interpreter, looked up on PATH (default: python3)
 *   -d DIR     the folder holding iotinvoke.py, put first on the child's PYTHONPATH for
 *              "PYTHON -m iotinvoke" (default: /usr/local/lib/iotinvoke, where the README installs
 *              it; -d "" leaves PYTHONPATH alone, for a module installed with pip)
 *   -s SCRIPT  run "PYTHON SCRIPT" instead of "PYTHON -m iotinvoke" (a copied iotinvoke.py;
 *              slower: Python compiles a script at every call)
 *   -c CONFIG  iotinvoke's config file (default: none given, so iotinvoke uses its own default,
 *              $IOTINVOKE_CONFIG or /etc/iotinvoke/iotinvoke.ini)
 *              A relative PYTHON (with a "/"), DIR, SCRIPT or CONFIG is taken from the working
 *              directory, as usual; iotinvoke itself runs in "/".
 *   -r RETRIES how many times to run again after exit status 75, 0 to 10 (default: 3)
 *   -w SECONDS the longest wait before running again that iotinvoke may ask for (default: 120;
 *              0 ignores its hint and backs off 1, 2, 4 ... s)
 *   -t SECONDS the whole call's bound, retries and waits included (default: 60; 0: none). When it
 *              runs out, iotinvoke is stopped with SIGTERM and says whether its invoke had been
 *              sent: exit status 74 if the function may have run, else 75. A caller with a
 *              deadline of its own passes it here; a function that runs longer needs a larger -t.
 *   -a SOCKET  ask the agent listening on SOCKET (e.g. /run/iotinvoke/agent.sock); fall back to
 *              running iotinvoke when nothing listens there. A request the agent may have
 *              started is never sent again: its lost answer is exit status 74, as ever.
 *
 * Standard output gets the response payload byte for byte (exit status 0 or 1); standard error
 * gets one short status line per attempt, prefixed "example: ". The exit status is iotinvoke's
 * own (after the retries), or EX_USAGE / EX_DATAERR / EX_OSERR / EX_UNAVAILABLE / EX_SOFTWARE /
 * EX_PROTOCOL / EX_IOERR for this program's own failures, so a caller can branch the same way.
 *
 * Compile (C99 + POSIX.1-2008, plus posix_spawn_file_actions_addchdir_np: glibc 2.29+, musl
 * 1.1.24+, FreeBSD 13.1+, macOS 10.15+; POSIX.1-2024 names it posix_spawn_file_actions_addchdir):
 *   gcc -std=c99 -Wall -Wextra -O2 -o example scripts/example.c
 * Try it against the local stand-in of AWS (see scripts/standin.py), from this repository:
 *   echo '{"test":"test1"}' | ./example -d . -c /tmp/aws/iotinvoke.ini dev
 *
 * iotinvoke bounds every request itself (--connect-timeout, --read-timeout); -t bounds the whole
 * call, retries and waits included, so a board with its network down answers within it (without
 * it, three retries of a cold call could take minutes). The program is single-threaded; a multi-threaded caller must create the
 * pipes with O_CLOEXEC atomically (pipe2) so that other threads' children don't inherit them.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PROG "example"
#define MAX_PAYLOAD_BYTES (7u * 1024u * 1024u)  /* request and response; Lambda's limit is 6 MB */
#define MAX_LINE_BYTES 1024u                    /* longest stderr line kept */
#define MAX_RETRIES 10
#define DEFAULT_RETRIES 3
#define MAX_DELAY_MS 30000u
#define DEFAULT_MAX_WAIT_S 120u
/* The whole call's bound (-t): what a C developer expects of one call on a board, not minutes. */
#define DEFAULT_DEADLINE_S 60u
#define STOP_GRACE_MS 5000 /* after SIGTERM, how long iotinvoke may take to say its line */
#define CHUNK 65536u
#define DEFAULT_DIR "/usr/local/lib/iotinvoke"
#define PYTHONPATH_IS "PYTHONPATH="
#define PYTHONSAFEPATH_IS "PYTHONSAFEPATH="
/* The child's working directory: root's. Pythons before 3.11 ignore PYTHONSAFEPATH and put it
 * first on the module path of "python3 -m". */
#define CHILD_DIR "/"

/* <spawn.h> declares it only with _GNU_SOURCE or _DEFAULT_SOURCE (glibc, musl), or outside strict
 * POSIX (the BSDs, macOS), hence here; glibc has it since 2.29 (Debian 11 ships 2.31). */
#if defined(__GLIBC__) && (__GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 29))
#error "posix_spawn_file_actions_addchdir_np needs glibc 2.29 or later (Debian 11+)"
#endif
int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *restrict actions, const char *restrict path);

/* A byte buffer that grows by doubling, up to MAX_PAYLOAD_BYTES. */
struct buf {
    char *data;
    size_t len, cap;
    int overflow; /* more than MAX_PAYLOAD_BYTES arrived; the excess was discarded */
};

/* The last non-empty line seen on a stream, bounded (a longer line is cut). */
struct line {
    char cur[MAX_LINE_BYTES], last[MAX_LINE_BYTES];
    size_t cur_len, last_len;
};

/* One run of iotinvoke. */
struct run {
    int status; /* from waitpid; or, from_agent, the agent's exit status itself */
    int from_agent;
    struct buf out;
    struct line err;
};

#if defined(__GNUC__)
#define PRINTF_LIKE __attribute__((format(printf, 1, 2)))
#else
#define PRINTF_LIKE
#endif

/* One status line on standard error: "example: ...". */
static PRINTF_LIKE void say(const char *fmt, ...)
{
    va_list ap;
    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int buf_append(struct buf *b, const char *p, size_t n)
{
    if (b->overflow || n > MAX_PAYLOAD_BYTES - b->len) {
        b->overflow = 1;
        return 0;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : CHUNK;
        char *grown;
        while (cap < b->len + n)
            cap *= 2;
        if (cap > MAX_PAYLOAD_BYTES)
            cap = MAX_PAYLOAD_BYTES;
        grown = realloc(b->data, cap);
        if (grown == NULL)
            return -1;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->overflow = 0;
}

static void line_feed(struct line *l, const char *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (p[i] == '\n') {
            if (l->cur_len > 0) {
                memcpy(l->last, l->cur, l->cur_len);
                l->last_len = l->cur_len;
            }
            l->cur_len = 0;
        } else if (l->cur_len < sizeof l->cur - 1) {
            l->cur[l->cur_len++] = p[i];
        }
    }
}

/* The last non-empty line, NUL-terminated; "" if there was none. */
static const char *line_get(struct line *l)
{
    if (l->cur_len > 0) { /* a last line without its newline */
        memcpy(l->last, l->cur, l->cur_len);
        l->last_len = l->cur_len;
        l->cur_len = 0;
    }
    l->last[l->last_len] = '\0';
    return l->last;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads all of fd into b; returns 0, or an exit status after saying why. */
static int read_all(int fd, struct buf *b, const char *what)
{
    char chunk[CHUNK];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r == 0)
            return 0;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            say("cannot read %s: %s", what, strerror(errno));
            return EX_IOERR;
        }
        if (buf_append(b, chunk, (size_t)r) != 0) {
            say("out of memory");
            return EX_OSERR;
        }
        if (b->overflow) {
            say("%s is over %u bytes", what, MAX_PAYLOAD_BYTES);
            return EX_DATAERR;
        }
    }
}

static int set_flag(int fd, int get, int set, int flag)
{
    int flags = fcntl(fd, get);
    return flags < 0 ? -1 : fcntl(fd, set, flags | flag);
}

/* Adds fd to the poll set unless it is closed (-1); returns its index there, or -1. */
static int watch(struct pollfd *fds, nfds_t *n, int fd, short events)
{
    if (fd < 0)
        return -1;
    fds[*n].fd = fd;
    fds[*n].events = events;
    fds[*n].revents = 0;
    return (int)(*n)++;
}

/* Makes sure descriptors 0, 1 and 2 are open, so that pipe() never returns one of them. */
static int guard_std_fds(void)
{
    int fd;
    for (fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int null = open("/dev/null", O_RDWR);
            if (null < 0)
                return -1;
            if (null != fd) { /* cannot happen: open() returns the lowest free descriptor */
                close(null);
                return -1;
            }
        }
    }
    return 0;
}

/* The whole call's deadline (-t), on the monotonic clock; none when deadline_set is 0. */
static struct timespec deadline_at;
static int deadline_set;

/* Milliseconds left before the deadline (0 once passed), or -1 without one: poll()'s timeout. */
static int remaining_ms(void)
{
    struct timespec now;
    long long ms;

    if (!deadline_set)
        return -1;
    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (long long)(deadline_at.tv_sec - now.tv_sec) * 1000 + (deadline_at.tv_nsec - now.tv_nsec) / 1000000;
    return ms <= 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
}

/*
 * Runs argv once with payload on its standard input; fills r. Returns 0 when the child was
 * run and reaped (its status in r->status), or an exit status after saying why not.
 */
static int run_once(char *const argv[], char *const envp[], const struct buf *payload, struct run *r)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    sigset_t pipe_only, none;
    pid_t pid = -1;
    size_t sent = 0;
    int rc, i, failed = 0, stopped = 0;

    if (pipe(in) != 0 || pipe(out) != 0 || pipe(err) != 0) {
        say("pipe: %s", strerror(errno));
        failed = EX_OSERR;
        goto close_pipes;
    }
    /* Every pipe end is close-on-exec; dup2() onto 0, 1, 2 in the child clears the flag there.
     * The parent writes without blocking, so a full pipe sends it back to poll(). */
    for (i = 0; i < 2; i++) {
        if (set_flag(in[i], F_GETFD, F_SETFD, FD_CLOEXEC) != 0 ||
            set_flag(out[i], F_GETFD, F_SETFD, FD_CLOEXEC) != 0 ||
            set_flag(err[i], F_GETFD, F_SETFD, FD_CLOEXEC) != 0) {
            say("fcntl: %s", strerror(errno));
            failed = EX_OSERR;
            goto close_pipes;
        }
    }
    if (set_flag(in[1], F_GETFL, F_SETFL, O_NONBLOCK) != 0) {
        say("fcntl: %s", strerror(errno));
        failed = EX_OSERR;
        goto close_pipes;
    }

    if ((rc = posix_spawn_file_actions_init(&actions)) != 0) {
        say("posix_spawn_file_actions_init: %s", strerror(rc));
        failed = EX_OSERR;
        goto close_pipes;
    }
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        say("posix_spawnattr_init: %s", strerror(rc));
        posix_spawn_file_actions_destroy(&actions);
        failed = EX_OSERR;
        goto close_pipes;
    }
    /* We ignore SIGPIPE to get EPIPE instead; the child gets the default back, and an empty
     * signal mask. */
    sigemptyset(&none);
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    if ((rc = posix_spawn_file_actions_addchdir_np(&actions, CHILD_DIR)) != 0 ||
        (rc = posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO)) != 0 ||
        (rc = posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO)) != 0 ||
        (rc = posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO)) != 0 ||
        (rc = posix_spawnattr_setsigdefault(&attr, &pipe_only)) != 0 ||
        (rc = posix_spawnattr_setsigmask(&attr, &none)) != 0 ||
        (rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)) != 0) {
        say("posix_spawn set-up: %s", strerror(rc));
        failed = EX_OSERR;
    } else if ((rc = posix_spawnp(&pid, argv[0], &actions, &attr, argv, envp)) != 0) {
        say("cannot run %s: %s", argv[0], strerror(rc));
        failed = rc == ENOENT || rc == EACCES ? EX_UNAVAILABLE : EX_OSERR;
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    if (failed)
        goto close_pipes;

    /* The parent keeps only its own ends: otherwise it would never see end-of-file. */
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    if (payload->len == 0)
        close_fd(&in[1]);

    while (in[1] >= 0 || out[0] >= 0 || err[0] >= 0) {
        struct pollfd fds[3];
        nfds_t n = 0;
        int w_at = watch(fds, &n, in[1], POLLOUT);
        int o_at = watch(fds, &n, out[0], POLLIN);
        int e_at = watch(fds, &n, err[0], POLLIN);
        char chunk[CHUNK];

        int ready = poll(fds, n, stopped ? STOP_GRACE_MS : remaining_ms());

        if (ready < 0) {
            if (errno == EINTR)
                continue;
            say("poll: %s", strerror(errno));
            failed = EX_OSERR;
            break;
        }
        if (ready == 0) {
            if (stopped) { /* it did not end after SIGTERM: it cannot say more */
                kill(pid, SIGKILL);
                break;
            }
            /* -t ran out: iotinvoke ends with its line, saying whether the invoke had been sent. */
            kill(pid, SIGTERM);
            stopped = 1;
            close_fd(&in[1]);
            continue;
        }
        if (w_at >= 0 && fds[w_at].revents != 0) {
            size_t left = payload->len - sent;
            ssize_t w = write(in[1], payload->data + sent, left < CHUNK ? left : CHUNK);
            if (w >= 0) {
                sent += (size_t)w;
                if (sent == payload->len)
                    close_fd(&in[1]); /* end-of-file: iotinvoke reads the payload to its end */
            } else if (errno == EPIPE) {
                close_fd(&in[1]); /* it stopped reading (an early error): its status says why */
            } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
                say("writing the payload: %s", strerror(errno));
                failed = EX_OSERR;
                break;
            }
        }
        if (o_at >= 0 && fds[o_at].revents != 0) {
            ssize_t got = read(out[0], chunk, sizeof chunk);
            if (got > 0) {
                if (buf_append(&r->out, chunk, (size_t)got) != 0) {
                    say("out of memory");
                    failed = EX_OSERR;
                    break;
                } /* past the bound: keep draining, so the child can finish; reported later */
            } else if (got == 0) {
                close_fd(&out[0]);
            } else if (errno != EINTR && errno != EAGAIN) {
                say("reading the response: %s", strerror(errno));
                failed = EX_OSERR;
                break;
            }
        }
        if (e_at >= 0 && fds[e_at].revents != 0) {
            ssize_t got = read(err[0], chunk, sizeof chunk);
            if (got > 0)
                line_feed(&r->err, chunk, (size_t)got);
            else if (got == 0)
                close_fd(&err[0]);
            else if (errno != EINTR && errno != EAGAIN) {
                say("reading the error line: %s", strerror(errno));
                failed = EX_OSERR;
                break;
            }
        }
    }
    if (failed)
        kill(pid, SIGTERM); /* we can't go on; don't leave it blocked on a pipe */
    close_fd(&in[1]);
    close_fd(&out[0]);
    close_fd(&err[0]);
    while (waitpid(pid, &r->status, 0) < 0) {
        if (errno != EINTR) {
            say("waitpid: %s", strerror(errno));
            return failed ? failed : EX_OSERR;
        }
    }
    return failed;

close_pipes:
    for (i = 0; i < 2; i++) {
        close_fd(&in[i]);
        close_fd(&out[i]);
        close_fd(&err[i]);
    }
    return failed;
}

/* --- The agent (-a SOCKET) ----------------------------------------------------------------------
 * iotinvoke --serve speaks a small length-prefixed protocol (described in iotinvoke.py, "The agent"):
 * every number an unsigned 32-bit big-endian integer, one request and one response per connection.
 *   request:  "IIA1" argc {length bytes}*argc stdin_length stdin_bytes
 *   response: "IIA1" exit_status stdout_length stdout_bytes stderr_length stderr_bytes
 * The agent runs a request only once it has arrived whole, and never twice.
 */
#define AGENT_MAGIC "IIA1"
#define AGENT_ABSENT (-1)                    /* nothing listens: run iotinvoke instead */
#define AGENT_MAX_STDERR_BYTES (1024u * 1024u) /* its error lines; more is a broken agent */

static void put_u32(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Appends one length-prefixed field; returns 0, or -1 when out of memory. */
static int agent_field(struct buf *b, const char *p, size_t n)
{
    unsigned char len[4];
    put_u32(len, n);
    if (buf_append(b, (const char *)len, 4) != 0 || buf_append(b, p, n) != 0 || b->overflow)
        return -1;
    return 0;
}

/* Reads exactly n bytes; returns 0, or -1 (errno set; 0 at an early end-of-file). */
static int agent_read(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t got = read(fd, p, n);
        if (got == 0) {
            errno = 0;
            return -1;
        }
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static size_t get_u32(const unsigned char *p)
{
    return ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | (size_t)p[3];
}

/*
 * Asks the agent at path to run iotinvoke's command line "[--config CONFIG] -- ENV -" with payload
 * on its standard input; fills r as run_once() does (r->from_agent set, r->status the exit
 * status). Returns 0, AGENT_ABSENT when nothing listens at path, or an exit status after saying
 * why: EX_TEMPFAIL when the request did not reach the agent whole (so nothing ran), EX_IOERR when
 * it did and the answer was lost (the function may have run: never sent again).
 */
static int agent_once(const char *path, const char *config, const char *env, const struct buf *payload,
                      struct run *r)
{
    struct sockaddr_un addr;
    struct buf req = {NULL, 0, 0, 0};
    unsigned char head[12], len[4];
    const char *args[4];
    size_t nargs = 0, i, out_len, err_len;
    int fd, rc = 0, sent_whole;

    if (strlen(path) >= sizeof addr.sun_path) {
        say("-a %s: the socket path is too long", path);
        return EX_USAGE;
    }
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) {
        say("socket: %s", strerror(errno));
        return EX_OSERR;
    }
    (void)set_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC);
    while (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EISCONN) /* an interrupted connect() that went on to finish */
            break;
        close(fd);
        if (e == ENOENT || e == ECONNREFUSED)
            return AGENT_ABSENT;
        say("cannot reach the agent at %s: %s", path, strerror(e));
        return e == EACCES || e == EPERM ? EX_NOPERM : EX_UNAVAILABLE;
    }
    if (deadline_set) { /* -t: a read or write past the bound fails, as a cut connection does */
        int left = remaining_ms();
        struct timeval tv;
        tv.tv_sec = (left > 0 ? left : 1) / 1000;
        tv.tv_usec = (suseconds_t)((left > 0 ? left : 1) % 1000) * 1000;
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }

    if (config != NULL) {
        args[nargs++] = "--config";
        args[nargs++] = config;
    }
    args[nargs++] = "--"; /* ENV is never taken for an option */
    args[nargs++] = env;
    put_u32(len, nargs);
    if (buf_append(&req, AGENT_MAGIC, 4) != 0 || buf_append(&req, (const char *)len, 4) != 0) {
        rc = EX_OSERR;
    } else {
        for (i = 0; i < nargs && rc == 0; i++)
            if (agent_field(&req, args[i], strlen(args[i])) != 0)
                rc = EX_OSERR;
    }
    if (rc == 0 && agent_field(&req, payload->data ? payload->data : "", payload->len) != 0)
        rc = EX_OSERR;
    if (rc != 0) {
        say("out of memory");
        buf_free(&req);
        close(fd);
        return rc;
    }
    /* The payload goes on the agent's standard input, as it goes on iotinvoke's: "-" is implied
     * by its absence from the arguments. A failed write is not the end: the agent may have
     * refused the caller (a one-line answer waits to be read), else the request was not whole
     * and nothing ran. */
    sent_whole = write_all(fd, req.data, req.len) == 0;
    buf_free(&req);
    if (sent_whole)
        shutdown(fd, SHUT_WR);

    if (agent_read(fd, head, sizeof head) != 0 || memcmp(head, AGENT_MAGIC, 4) != 0) {
        int e = errno;
        close(fd);
        if (!sent_whole) {
            say("the agent at %s hung up before the request was sent (%s); nothing ran", path, strerror(e));
            return EX_TEMPFAIL;
        }
        say("the agent at %s sent no answer (%s): the function may have run", path,
            e ? strerror(e) : "connection closed");
        return EX_IOERR;
    }
    r->from_agent = 1;
    r->status = (int)get_u32(head + 4);
    out_len = get_u32(head + 8);
    if (r->status > 255 || out_len > MAX_PAYLOAD_BYTES) {
        say("the agent at %s sent a malformed answer: the function may have run", path);
        close(fd);
        return EX_PROTOCOL;
    }
    while (out_len > 0) {
        char chunk[CHUNK];
        size_t want = out_len < sizeof chunk ? out_len : sizeof chunk;
        if (agent_read(fd, (unsigned char *)chunk, want) != 0 || buf_append(&r->out, chunk, want) != 0)
            goto lost;
        out_len -= want;
    }
    if (agent_read(fd, len, 4) != 0 || (err_len = get_u32(len)) > AGENT_MAX_STDERR_BYTES)
        goto lost;
    while (err_len > 0) {
        char chunk[CHUNK];
        size_t want = err_len < sizeof chunk ? err_len : sizeof chunk;
        if (agent_read(fd, (unsigned char *)chunk, want) != 0)
            goto lost;
        line_feed(&r->err, chunk, want);
        err_len -= want;
    }
    close(fd);
    return 0;

lost:
    say("the agent's answer was cut (%s): the function may have run", errno ? strerror(errno) : "connection closed");
    close(fd);
    return EX_IOERR;
}

/* The wait iotinvoke asks for at the end of its error line, "... [reason; retry after N s]", in
 * ms; 0 when the line has none. After a fleet-wide failure iotinvoke spreads the boards' waits. */
static unsigned hinted_ms(const char *line)
{
    const char *tag = strrchr(line, '['), *hint;
    unsigned long seconds;
    char *end;
    if (tag == NULL || (hint = strstr(tag, "retry after ")) == NULL)
        return 0;
    errno = 0;
    seconds = strtoul(hint + strlen("retry after "), &end, 10);
    if (errno != 0 || strncmp(end, " s]", 3) != 0 || seconds > 86400ul)
        return 0;
    return (unsigned)seconds * 1000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec left;
    left.tv_sec = (time_t)(ms / 1000u);
    left.tv_nsec = (long)(ms % 1000u) * 1000000L;
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
}

/* 1 s, 2 s, 4 s ... before retry number attempt, capped, plus up to 25 % random jitter so that
 * a fleet of boards that failed together does not retry together. */
static unsigned backoff_ms(int attempt)
{
    unsigned ms = 1000u;
    int i;
    for (i = 1; i < attempt && ms < MAX_DELAY_MS; i++)
        ms *= 2;
    if (ms > MAX_DELAY_MS)
        ms = MAX_DELAY_MS;
    return ms + (unsigned)rand() % (ms / 4u + 1u);
}

static char safe_path[] = PYTHONSAFEPATH_IS "1";

/*
 * The child's environment: ours, with PYTHONSAFEPATH=1 and, unless dir is "", dir first on
 * PYTHONPATH (before any PYTHONPATH we have). Built as a new array rather than with setenv(), so
 * that nothing is left allocated at exit. Returns NULL when out of memory; free it with
 * free_environment().
 */
static char **child_environment(const char *dir)
{
    const char *old = getenv("PYTHONPATH");
    size_t count = 0, i, j = 0, size;
    char **envp;

    while (environ[count] != NULL)
        count++;
    envp = malloc((count + 3) * sizeof *envp);
    if (envp == NULL)
        return NULL;
    if (*dir != '\0') {
        size = sizeof PYTHONPATH_IS + strlen(dir) + (old != NULL && *old ? 1 + strlen(old) : 0);
        envp[j] = malloc(size);
        if (envp[j] == NULL) {
            free(envp);
            return NULL;
        }
        if (old != NULL && *old)
            snprintf(envp[j], size, PYTHONPATH_IS "%s:%s", dir, old);
        else
            snprintf(envp[j], size, PYTHONPATH_IS "%s", dir);
        j++;
    }
    envp[j++] = safe_path;
    for (i = 0; i < count; i++)
        if (strncmp(environ[i], PYTHONSAFEPATH_IS, sizeof PYTHONSAFEPATH_IS - 1) != 0 &&
            (*dir == '\0' || strncmp(environ[i], PYTHONPATH_IS, sizeof PYTHONPATH_IS - 1) != 0))
            envp[j++] = environ[i];
    envp[j] = NULL;
    return envp;
}

static void free_environment(char **envp)
{
    if (envp != NULL && envp != environ) {
        if (envp[0] != safe_path)
            free(envp[0]); /* the PYTHONPATH entry we made; the others are static or environ's */
        free(envp);
    }
}

/* The working directory, in a new allocation (POSIX leaves getcwd(NULL, 0) unspecified); NULL
 * with errno set when it cannot be had. */
static char *working_directory(void)
{
    size_t cap = 256;
    char *cwd = NULL;
    for (;;) {
        char *grown = realloc(cwd, cap);
        if (grown == NULL) {
            free(cwd);
            errno = ENOMEM;
            return NULL;
        }
        cwd = grown;
        if (getcwd(cwd, cap) != NULL)
            return cwd;
        if (errno != ERANGE) {
            free(cwd);
            return NULL;
        }
        cap *= 2;
    }
}

/*
 * Makes each relative path in paths absolute against the working directory (joined, not
 * resolved: a virtual environment's python finds its packages by its own path, and a missing
 * file is Python's or iotinvoke's to report). made[i] gets the new allocation, if any; free
 * them. Returns 0, or an exit status after saying why not.
 */
static int make_absolute(const char **paths[], char *made[], size_t n)
{
    char *cwd = NULL;
    size_t i;
    int code = 0;
    for (i = 0; i < n && code == 0; i++) {
        const char *path = *paths[i];
        size_t size;
        if (path == NULL || *path == '\0' || *path == '/')
            continue;
        if (cwd == NULL && (cwd = working_directory()) == NULL) {
            say("cannot make %s absolute: %s", path, strerror(errno));
            code = EX_OSERR;
            break;
        }
        size = strlen(cwd) + 1 + strlen(path) + 1;
        if ((made[i] = malloc(size)) == NULL) {
            say("out of memory");
            code = EX_OSERR;
            break;
        }
        snprintf(made[i], size, "%s%s%s", cwd, cwd[strlen(cwd) - 1] == '/' ? "" : "/", path);
        *paths[i] = made[i];
    }
    free(cwd);
    return code;
}

static void usage(void)
{
    fputs("usage: " PROG " [-a SOCKET] [-p PYTHON] [-d DIR | -s SCRIPT] [-c CONFIG] [-r RETRIES] [-w SECONDS]"
          " [-t SECONDS] ENV [PAYLOAD]\n", stderr);
}

int main(int argc, char *argv[])
{
    const char *python = "python3";
    const char *dir = DEFAULT_DIR;
    const char *script = NULL; /* NULL: PYTHON -m iotinvoke */
    const char *config = NULL;
    const char *agent = NULL; /* -a SOCKET */
    const char *env, *arg_payload = NULL;
    char *child_argv[10];
    char **child_envp;
    char *made[4] = {NULL, NULL, NULL, NULL};
    const char **relative[4];
    size_t count = 0, k;
    struct buf payload = {NULL, 0, 0, 0};
    struct run r;
    struct sigaction ignore;
    int retries = DEFAULT_RETRIES, attempt, opt, n = 0, code = EX_OK;
    unsigned max_wait_ms = DEFAULT_MAX_WAIT_S * 1000u, deadline_s = DEFAULT_DEADLINE_S;

    while ((opt = getopt(argc, argv, "a:p:d:s:c:r:w:t:h")) != -1) {
        switch (opt) {
        case 'a': agent = optarg; break;
        case 'p': python = optarg; break;
        case 'd': dir = optarg; break;
        case 's': script = optarg; break;
        case 'c': config = optarg; break;
        case 'r': {
            char *end;
            long value;
            errno = 0;
            value = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || value < 0 || value > MAX_RETRIES) {
                say("-r takes a number of retries from 0 to %d", MAX_RETRIES);
                return EX_USAGE;
            }
            retries = (int)value;
            break;
        }
        case 'w': {
            char *end;
            long value;
            errno = 0;
            value = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || value < 0 || value > 3600) {
                say("-w takes the longest wait in seconds, from 0 to 3600");
                return EX_USAGE;
            }
            max_wait_ms = (unsigned)value * 1000u;
            break;
        }
        case 't': {
            char *end;
            long value;
            errno = 0;
            value = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || value < 0 || value > 86400) {
                say("-t takes the whole call's bound in seconds, from 0 (none) to 86400");
                return EX_USAGE;
            }
            deadline_s = (unsigned)value;
            break;
        }
        case 'h': usage(); return EX_OK;
        default: usage(); return EX_USAGE;
        }
    }
    if (argc - optind < 1 || argc - optind > 2) {
        usage();
        return EX_USAGE;
    }
    env = argv[optind];
    if (argc - optind == 2 && strcmp(argv[optind + 1], "-") != 0)
        arg_payload = argv[optind + 1];

    if (guard_std_fds() != 0) {
        say("cannot open /dev/null: %s", strerror(errno));
        return EX_OSERR;
    }
    /* A write to a pipe whose reader is gone must fail with EPIPE, not kill us. */
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    if (sigaction(SIGPIPE, &ignore, NULL) != 0) {
        say("sigaction: %s", strerror(errno));
        return EX_OSERR;
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());

    /* The payload: from the command line, or all of standard input. Either way it is passed on
     * iotinvoke's standard input, so its size is not limited by the argument list. */
    if (arg_payload != NULL) {
        if (buf_append(&payload, arg_payload, strlen(arg_payload)) != 0) {
            say("out of memory");
            code = EX_OSERR;
        } else if (payload.overflow) {
            say("the payload is over %u bytes", MAX_PAYLOAD_BYTES);
            code = EX_DATAERR;
        }
        if (code != EX_OK) {
            buf_free(&payload);
            return code;
        }
    } else if ((code = read_all(STDIN_FILENO, &payload, "the payload on standard input")) != 0) {
        buf_free(&payload);
        return code;
    }

    /* The child runs in "/" (run_once): our relative paths are made absolute first. PYTHON
     * without a "/" is looked up on PATH. */
    if (strchr(python, '/') != NULL)
        relative[count++] = &python;
    relative[count++] = &dir;
    relative[count++] = &script;
    relative[count++] = &config;
    if ((code = make_absolute(relative, made, count)) != 0 ||
        (child_envp = child_environment(script == NULL ? dir : "")) == NULL) {
        if (code == 0) {
            say("out of memory");
            code = EX_OSERR;
        }
        for (k = 0; k < 4; k++)
            free(made[k]);
        buf_free(&payload);
        return code;
    }

    child_argv[n++] = (char *)python;
    if (script != NULL) {
        child_argv[n++] = (char *)script;
    } else {
        child_argv[n++] = "-m";
        child_argv[n++] = "iotinvoke";
    }
    if (config != NULL) {
        child_argv[n++] = "--config";
        child_argv[n++] = (char *)config;
    }
    child_argv[n++] = "--"; /* ENV is never taken for an option */
    child_argv[n++] = (char *)env;
    child_argv[n++] = "-";  /* the payload comes on standard input */
    child_argv[n] = NULL;

    if (deadline_s > 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline_at);
        deadline_at.tv_sec += (time_t)deadline_s;
        deadline_set = 1;
    }
    for (attempt = 1;; attempt++) {
        int failed;
        const char *line;

        memset(&r, 0, sizeof r);
        failed = agent != NULL ? agent_once(agent, config, env, &payload, &r) : AGENT_ABSENT;
        if (failed == AGENT_ABSENT)
            failed = run_once(child_argv, child_envp, &payload, &r);
        if (failed) {
            code = failed;
            buf_free(&r.out);
            break;
        }
        line = line_get(&r.err);
        if (!r.from_agent && WIFSIGNALED(r.status)) {
            say("%s: iotinvoke was killed by signal %d", env, WTERMSIG(r.status));
            code = EX_SOFTWARE;
        } else if (!r.from_agent && !WIFEXITED(r.status)) {
            say("%s: iotinvoke ended with wait status %#x", env, (unsigned)r.status);
            code = EX_SOFTWARE;
        } else if (r.out.overflow) {
            say("%s: the response is over %u bytes; discarded", env, MAX_PAYLOAD_BYTES);
            code = EX_PROTOCOL;
        } else {
            code = r.from_agent ? r.status : WEXITSTATUS(r.status);
            if (code == 143 && deadline_set && remaining_ms() == 0) {
                /* Stopped by -t: iotinvoke's line says whether the function may have run. */
                say("%s: the call's bound of %u s ran out: %s", env, deadline_s, line);
                code = strstr(line, "may have run") != NULL ? EX_IOERR : EX_TEMPFAIL;
                buf_free(&r.out);
                break;
            }
            if (code == 1 && strncmp(line, "iotinvoke: ", strlen("iotinvoke: ")) != 0)
                code = strstr(line, "No module named") != NULL ? -1 : -2; /* Python's 1, below */
            switch (code) {
            case EX_OK:
            case 1: /* the function raised; its error payload is the answer to print */
                if (write_all(STDOUT_FILENO, r.out.data, r.out.len) != 0) {
                    say("%s: cannot write the response: %s", env, strerror(errno));
                    code = EX_IOERR;
                } else if (code == EX_OK) {
                    say("%s: ok, %zu bytes (attempt %d)", env, r.out.len, attempt);
                } else {
                    say("%s: the function reported an error (its payload is on stdout): %s", env,
                        *line ? line : "(no detail)");
                }
                break;
            case EX_TEMPFAIL:
                if (attempt <= retries) {
                    unsigned ms = max_wait_ms ? hinted_ms(line) : 0;
                    int left = remaining_ms();
                    if (ms == 0)
                        ms = backoff_ms(attempt);
                    else if (ms > max_wait_ms)
                        ms = max_wait_ms;
                    if (left >= 0 && (unsigned)left <= ms) { /* no time to wait and run again */
                        say("%s: transient failure, and the call's bound of %u s leaves no time to retry: %s",
                            env, deadline_s, line);
                        break;
                    }
                    say("%s: transient failure, retrying in %u.%01u s (retry %d of %d): %s", env,
                        ms / 1000u, ms % 1000u / 100u, attempt, retries, line);
                    buf_free(&r.out);
                    sleep_ms(ms);
                    continue;
                }
                say("%s: transient failure, giving up after %d attempt%s: %s", env, attempt,
                    attempt == 1 ? "" : "s", line);
                break;
            case EX_IOERR:
                say("%s: the answer was lost and the function may have run; not retrying: %s", env,
                    line);
                break;
            case -1:  /* Python's exit status 1: a module is missing (iotinvoke or a dependency) */
            case 2:   /* Python's own: no such script, a bad option */
            case 126: /* a wrapper found the interpreter but could not execute it */
            case 127: /* a wrapper could not find it */
                say("%s: iotinvoke could not be started (%s exited %d; check -p, -d, -s): %s", env,
                    python, WEXITSTATUS(r.status), *line ? line : "(nothing on stderr)");
                code = EX_UNAVAILABLE;
                break;
            case -2:  /* Python's exit status 1 without iotinvoke's line: an uncaught exception */
                say("%s: iotinvoke crashed (%s exited 1): %s", env, python,
                    *line ? line : "(nothing on stderr)");
                code = EX_SOFTWARE;
                break;
            default:
                say("%s: failed with exit status %d: %s", env, code,
                    *line ? line : "(nothing on stderr)");
                break;
            }
        }
        buf_free(&r.out);
        break;
    }
    buf_free(&payload);
    free_environment(child_envp);
    for (k = 0; k < 4; k++)
        free(made[k]);
    return code;
}
