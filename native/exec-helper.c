/*
 * berth's per-container exec helper: started once inside a container by `runc exec` (so it has
 * exactly the confinement runc gives an exec), it then forks each later exec itself, which costs
 * ~1-3 ms instead of a whole `runc exec`. Two modes:
 *
 *   launch <socket-path> -- <runc argv...>   (on the host, run by berthd)
 *     Binds and listens on <socket-path>, copies its own executable into a sealed memfd (so no
 *     container process can rewrite the host binary through /proc/<pid>/exe), puts the memfd on
 *     fd 3 and the listening socket on fd 4, and execs runc, whose argv must run
 *     `/proc/self/fd/3 serve` in the container with `--preserve-fds 2`.
 *
 *   serve   (in the container)
 *     Accepts connections on fd 4; each is one exec session, served by a process of its own.
 *
 * Frames, both directions: 1 byte type, 4 bytes big-endian payload length, payload.
 *   berthd -> helper: HEADER (first; flags u8 [1 tty, 2 stdin], rows u16, cols u16, argv as
 *                     NUL-terminated strings), STDIN data, STDIN_EOF, RESIZE (rows u16, cols u16),
 *                     KILL (SIGKILL the command).
 *   helper -> berthd: STARTED (pid u32), FAILED (errno u32; the command could not be executed),
 *                     STDOUT data, STDERR data, EXIT (status u32: the exit code, or 128+signal),
 *                     UNUSABLE (errno u32; the helper cannot make a process here, e.g. a seccomp
 *                     profile forbids a call it needs: berthd then uses the runtime's exec).
 * Connection EOF before the exit kills the command.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

enum {
  F_HEADER = 1, F_STDIN = 2, F_STDIN_EOF = 3, F_RESIZE = 4, F_KILL = 5,
  F_STARTED = 16, F_FAILED = 17, F_STDOUT = 18, F_STDERR = 19, F_EXIT = 20, F_UNUSABLE = 21,
};

#define MEMFD_FD 3
#define LISTEN_FD 4
/* Largest frame berthd may send after the header, and the largest header (argv). */
#define MAX_FRAME (64 * 1024)
#define MAX_HEADER (256 * 1024)
#define MAX_ARGS 4096
/* Output queued for berthd before the command's output stops being read (backpressure). */
#define OUT_HIGH (256 * 1024)

static void die(const char *what) {
  fprintf(stderr, "berth-exec-helper: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* ---------------------------------------------------------------- launch (host side) */

static int launch(int argc, char **argv) {
  if (argc < 5 || strcmp(argv[3], "--") != 0) {
    fprintf(stderr, "usage: berth-exec-helper launch <socket-path> -- <runc argv...>\n");
    return 2;
  }
  const char *path = argv[2];
  /* The path may be longer than a socket address holds: bind through a directory fd. */
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!slash || (size_t)(slash - path) >= sizeof dir) {
    fprintf(stderr, "berth-exec-helper: socket path must be absolute: %s\n", path);
    return 2;
  }
  memcpy(dir, path, (size_t)(slash - path));
  dir[slash - path] = 0;
  int dfd = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) die("open socket directory");
  if (unlinkat(dfd, slash + 1, 0) < 0 && errno != ENOENT) die("remove stale socket");
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if ((size_t)snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", dfd, slash + 1) >= sizeof sa.sun_path) {
    fprintf(stderr, "berth-exec-helper: socket name too long: %s\n", slash + 1);
    return 2;
  }
  int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ls < 0) die("socket");
  if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
  if (listen(ls, 64) < 0) die("listen");
  close(dfd);

  /* A sealed in-memory copy of this program is what runs in the container. */
  int mfd = memfd_create("berth-exec-helper", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (mfd < 0) die("memfd_create");
  int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (self < 0) die("open /proc/self/exe");
  char buf[65536];
  for (;;) {
    ssize_t n = read(self, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("read /proc/self/exe");
    if (n == 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(mfd, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) die("write memfd");
      off += w;
    }
  }
  close(self);
  if (fchmod(mfd, 0555) < 0) die("fchmod memfd");
  if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) die("seal memfd");

  /* Move both above the target numbers first, so neither dup2 overwrites the other. */
  int m2 = fcntl(mfd, F_DUPFD_CLOEXEC, 10), l2 = fcntl(ls, F_DUPFD_CLOEXEC, 10);
  if (m2 < 0 || l2 < 0) die("dup");
  close(mfd);
  close(ls);
  if (dup2(m2, MEMFD_FD) < 0 || dup2(l2, LISTEN_FD) < 0) die("dup2"); /* dup2 clears CLOEXEC */
  close(m2);
  close(l2);
  execv(argv[4], argv + 4);
  die("exec runtime");
  return 1;
}

/* ---------------------------------------------------------------- serve (in the container) */

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16); p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}
static unsigned get_u16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }
static uint32_t get_u32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* Bytes queued for berthd. */
static unsigned char *out_buf;
static size_t out_len, out_cap;

static void out_frame(int type, const void *data, size_t len) {
  if (out_len + 5 + len > out_cap) {
    size_t cap = out_cap ? out_cap : 65536;
    while (cap < out_len + 5 + len) cap *= 2;
    unsigned char *b = realloc(out_buf, cap);
    if (!b) _exit(1);
    out_buf = b;
    out_cap = cap;
  }
  out_buf[out_len] = (unsigned char)type;
  put_u32(out_buf + out_len + 1, (uint32_t)len);
  if (len) memcpy(out_buf + out_len + 5, data, len);
  out_len += 5 + len;
}

static void out_u32(int type, uint32_t v) {
  unsigned char b[4];
  put_u32(b, v);
  out_frame(type, b, 4);
}

/* Writes what the socket takes; returns -1 when berthd is gone. */
static int out_flush(int sock) {
  size_t off = 0;
  while (off < out_len) {
    ssize_t w = send(sock, out_buf + off, out_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (w < 0) return -1;
    off += (size_t)w;
  }
  memmove(out_buf, out_buf + off, out_len - off);
  out_len -= off;
  return 0;
}

/* Blocking write of everything queued (the session's last words). */
static void out_flush_all(int sock) {
  while (out_len > 0) {
    if (out_flush(sock) < 0) return;
    if (out_len > 0) {
      struct pollfd p = {.fd = sock, .events = POLLOUT};
      if (poll(&p, 1, -1) < 0 && errno != EINTR) return;
    }
  }
}

static int read_full(int fd, void *buf, size_t len) {
  unsigned char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Tells the session why the command did not run: 0 = the exec failed (the command's fault), 1 = setting it up failed. */
static void child_fail(int errpipe, int stage) {
  unsigned char b[5];
  b[0] = (unsigned char)stage;
  put_u32(b + 1, (uint32_t)errno);
  if (write(errpipe, b, 5) < 0) { /* cannot fail: the pipe is open and empty */ }
  _exit(127);
}

/* In the command's process: default signal handling, nothing open but its stdio, then exec. */
static void exec_child(char **args, int in, int out, int err, int tty, int errpipe) {
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  for (int s = 1; s < NSIG; s++) sigaction(s, &dfl, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (setsid() < 0) child_fail(errpipe, 1);
  if (tty && ioctl(in, TIOCSCTTY, 0) < 0) child_fail(errpipe, 1);
  /* Onto fds above the stdio numbers first, so the dup2s below cannot clobber each other. */
  int i2 = fcntl(in, F_DUPFD, 10), o2 = fcntl(out, F_DUPFD, 10), e2 = fcntl(err, F_DUPFD, 10);
  if (i2 < 0 || o2 < 0 || e2 < 0) child_fail(errpipe, 1);
  if (dup2(i2, 0) < 0 || dup2(o2, 1) < 0 || dup2(e2, 2) < 0) child_fail(errpipe, 1);
  /* Nothing else of the helper's may reach the command; errpipe must stay open until the exec
   * succeeds, so everything is marked close-on-exec rather than closed. */
  if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
    for (int fd = 3; fd < 1024; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  execvp(args[0], args);
  child_fail(errpipe, 0);
}

/* One session's state: frames from berthd being read, and stdin bytes waiting for the command. */
static unsigned char rbuf[5 + MAX_FRAME];
static size_t rlen, rstart, pend_off, pend_end;
static int tty, in_w = -1, master = -1;
static pid_t pid;

/*
 * Acts on the whole frames buffered from rstart, stopping at stdin data (written before anything
 * after it is read). Strict: an unknown type or a wrong length ends the session.
 */
static int parse_frames(void) {
  while (rlen - rstart >= 5) {
    uint32_t len = get_u32(rbuf + rstart + 1);
    if (len > MAX_FRAME) return -1;
    if (rlen - rstart < 5 + len) break;
    unsigned char type = rbuf[rstart];
    size_t data = rstart + 5;
    rstart += 5 + len;
    if (type == F_STDIN) {
      if (len > 0 && in_w >= 0) {
        pend_off = data;
        pend_end = data + len;
        return 0;
      }
    } else if (type == F_STDIN_EOF && len == 0) {
      /* A terminal stays open: the client may just have nothing more to type. */
      if (!tty && in_w >= 0) {
        close(in_w);
        in_w = -1;
      }
    } else if (type == F_RESIZE && len == 4) {
      struct winsize ws = {.ws_row = (unsigned short)get_u16(rbuf + data), .ws_col = (unsigned short)get_u16(rbuf + data + 2)};
      if (tty) ioctl(master, TIOCSWINSZ, &ws);
    } else if (type == F_KILL && len == 0) {
      kill(pid, SIGKILL);
    } else {
      return -1;
    }
  }
  memmove(rbuf, rbuf + rstart, rlen - rstart);
  rlen -= rstart;
  rstart = 0;
  return 0;
}

/*
 * Ends the session once berthd has read everything: it closes the connection after the last
 * frame, so its own late writes (a resize, stdin EOF) never meet a closed socket.
 */
static void finish(int sock) {
  out_flush_all(sock);
  shutdown(sock, SHUT_WR);
  struct pollfd p = {.fd = sock, .events = POLLIN};
  unsigned char b[4096];
  while (poll(&p, 1, 10000) > 0) {
    ssize_t r = recv(sock, b, sizeof b, MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) break;
  }
  _exit(0);
}

static void session(int sock) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  unsigned char hdr[5];
  if (read_full(sock, hdr, 5) < 0 || hdr[0] != F_HEADER) _exit(1);
  uint32_t hlen = get_u32(hdr + 1);
  if (hlen < 6 || hlen > MAX_HEADER) _exit(1);
  unsigned char *h = malloc(hlen + 1);
  if (!h || read_full(sock, h, hlen) < 0) _exit(1);
  h[hlen] = 0;
  tty = h[0] & 1;
  int want_stdin = h[0] & 2;
  unsigned rows = get_u16(h + 1), cols = get_u16(h + 3);
  char *args[MAX_ARGS + 1];
  size_t nargs = 0;
  if (h[hlen - 1] != 0) _exit(1);
  for (size_t off = 5; off < hlen;) {
    if (nargs == MAX_ARGS) _exit(1); /* berthd sends no more than this */
    args[nargs++] = (char *)h + off;
    off += strlen((char *)h + off) + 1;
  }
  if (nargs == 0) _exit(1);
  args[nargs] = NULL;

  /* SIGCHLD through a signalfd: the command's exit wakes the poll loop. */
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) goto setup_failed;

  int errp[2];
  if (pipe2(errp, O_CLOEXEC) < 0) goto setup_failed;
  /* Our ends: in_w (command's stdin), out_r, err_r (or the pty master for all three). */
  int out_r = -1, err_r = -1;
  int c_in, c_out, c_err;
  if (tty) {
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) goto setup_failed;
    char *name = ptsname(master);
    int slave = name ? open(name, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
    if (slave < 0) goto setup_failed;
    if (rows && cols) {
      struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
      ioctl(master, TIOCSWINSZ, &ws);
    }
    c_in = c_out = c_err = slave;
    in_w = out_r = master;
  } else {
    int pi[2], po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) goto setup_failed;
    if (want_stdin) {
      if (pipe2(pi, O_CLOEXEC) < 0) goto setup_failed;
    } else {
      pi[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
      pi[1] = -1;
      if (pi[0] < 0 && pipe2(pi, O_CLOEXEC) == 0) { /* no /dev/null: an empty pipe gives EOF too */
        close(pi[1]);
        pi[1] = -1;
      }
      if (pi[0] < 0) goto setup_failed;
    }
    c_in = pi[0]; c_out = po[1]; c_err = pe[1];
    in_w = pi[1]; out_r = po[0]; err_r = pe[0];
  }
  pid = fork();
  if (pid < 0) goto setup_failed;
  if (pid == 0) exec_child(args, c_in, c_out, c_err, tty, errp[1]);
  close(errp[1]);
  if (c_in >= 0) close(c_in);
  if (!tty) { close(c_out); close(c_err); }
  unsigned char eb[5];
  ssize_t en;
  while ((en = read(errp[0], eb, 5)) < 0 && errno == EINTR) {}
  close(errp[0]);
  if (en != 0) {
    waitpid(pid, NULL, 0);
    out_u32(en == 5 && eb[0] == 0 ? F_FAILED : F_UNUSABLE, en == 5 ? get_u32(eb + 1) : 0);
    finish(sock);
  }
  out_u32(F_STARTED, (uint32_t)pid);
  if (in_w >= 0 && !tty) set_nonblock(in_w);
  if (out_r >= 0) set_nonblock(out_r);
  if (err_r >= 0) set_nonblock(err_r);
  set_nonblock(sock);

  int exited = 0, status = 0;
  while (!exited) {
    struct pollfd p[5];
    int n = 0, i_sock, i_out = -1, i_err = -1, i_in = -1;
    p[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    short sev = 0;
    /* The socket is read only while no stdin bytes wait: the command's stdin pushes back on berthd. */
    if (pend_end == 0) sev |= POLLIN;
    if (out_len > 0) sev |= POLLOUT;
    /* Always watched, so berthd leaving is noticed even while the command does not read stdin. */
    i_sock = n;
    p[n++] = (struct pollfd){.fd = sock, .events = sev | POLLRDHUP};
    if (out_len < OUT_HIGH) {
      if (out_r >= 0) { i_out = n; p[n++] = (struct pollfd){.fd = out_r, .events = POLLIN}; }
      if (err_r >= 0) { i_err = n; p[n++] = (struct pollfd){.fd = err_r, .events = POLLIN}; }
    }
    if (pend_end > 0 && in_w >= 0) { i_in = n; p[n++] = (struct pollfd){.fd = in_w, .events = POLLOUT}; }
    if (poll(p, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      goto gone;
    }
    if (p[0].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {}
      if (waitpid(pid, &status, WNOHANG) == pid) exited = 1;
    }
    if ((p[i_sock].revents & (POLLRDHUP | POLLHUP | POLLERR)) && pend_end > 0) goto gone;
    if ((p[i_sock].revents & POLLOUT) && out_flush(sock) < 0) goto gone;
    if ((p[i_sock].revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) && pend_end == 0) {
      ssize_t r = recv(sock, rbuf + rlen, sizeof rbuf - rlen, MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) goto gone;
      if (r > 0) rlen += (size_t)r;
      if (parse_frames() < 0) goto gone;
    }
    if (i_in >= 0 && (p[i_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = write(in_w, rbuf + pend_off, pend_end - pend_off);
      if (w > 0) pend_off += (size_t)w;
      else if (w < 0 && errno != EAGAIN && errno != EINTR) pend_off = pend_end; /* reader gone: drop */
      if (pend_off == pend_end) {
        pend_off = pend_end = 0;
        if (parse_frames() < 0) goto gone;
      }
    }
    for (int k = 0; k < 2; k++) {
      int idx = k ? i_err : i_out, *fd = k ? &err_r : &out_r;
      if (idx < 0 || !(p[idx].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      unsigned char b[32768];
      ssize_t r = read(*fd, b, sizeof b);
      if (r > 0) out_frame(k ? F_STDERR : F_STDOUT, b, (size_t)r);
      else if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        /* EOF (or EIO on a terminal whose last holder closed it). */
        if (*fd != master) close(*fd);
        *fd = -1;
        if (tty) in_w = -1;
      }
    }
    if (out_len > 0 && out_flush(sock) < 0) goto gone;
  }
  /* The command exited: what it wrote before that is still in the pipes; send it, then the status. */
  for (int k = 0; k < 2; k++) {
    int fd = k ? err_r : out_r;
    if (fd < 0) continue;
    unsigned char b[32768];
    ssize_t r;
    /* Bounded: a process the command left behind may keep writing to the same pipe. */
    for (int i = 0; i < 64 && (r = read(fd, b, sizeof b)) > 0; i++) {
      out_frame(k ? F_STDERR : F_STDOUT, b, (size_t)r);
      if (out_len >= OUT_HIGH) out_flush_all(sock);
    }
  }
  out_u32(F_EXIT, WIFSIGNALED(status) ? 128 + (uint32_t)WTERMSIG(status) : (uint32_t)WEXITSTATUS(status));
  finish(sock);
gone:
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  _exit(0);
setup_failed:
  out_u32(F_UNUSABLE, (uint32_t)errno);
  finish(sock);
}

static int serve(void) {
  close(MEMFD_FD);
  prctl(PR_SET_NAME, "berth-exec");
  /* runc's stdio (berthd's pipes) must not stay open: berthd waits for them to close. */
  int null = open("/dev/null", O_RDWR);
  if (null < 0) null = socket(AF_UNIX, SOCK_STREAM, 0);
  for (int fd = 0; fd < 3; fd++) if (null != fd) dup2(null, fd);
  if (null > 2) close(null);
  fcntl(LISTEN_FD, F_SETFD, FD_CLOEXEC);
  /* A command that closed its stdin must not kill its session with SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  /* Sessions are reaped as they end. */
  struct sigaction sa = {.sa_handler = SIG_DFL, .sa_flags = SA_NOCLDWAIT};
  sigaction(SIGCHLD, &sa, NULL);
  for (;;) {
    int c = accept4(LISTEN_FD, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        /* Out of something for now: the waiting exec's connection stays queued; try again shortly. */
        usleep(100000);
        continue;
      }
      return 1;
    }
    pid_t sp = fork();
    if (sp == 0) {
      close(LISTEN_FD);
      /* A session reaps its own command: SIGCHLD back to default (SA_NOCLDWAIT would hide it). */
      struct sigaction d = {.sa_handler = SIG_DFL};
      sigaction(SIGCHLD, &d, NULL);
      session(c);
    }
    close(c);
  }
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "launch") == 0) return launch(argc, argv);
  if (argc == 2 && strcmp(argv[1], "serve") == 0) return serve();
  fprintf(stderr, "usage: berth-exec-helper launch <socket-path> -- <runc argv...> | serve\n");
  return 2;
}
