/* gpgproc: the pool of OpenPGP worker processes (the proxy's side) and the
 * worker's own loop. One stream socket per process carries framed messages:
 * a request, the input in chunks, the output in chunks, the answer. */
#include "gpgproc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "keystore.h"
#include "worker.h"

extern char **environ;

/* The socket's number in a worker process. */
#define GPGPROC_FD 3
/* Input and output travel in chunks of this size; no frame may be larger
 * than GPGPROC_MAX_FRAME, so both sides hold bounded buffers. */
#define GPGPROC_CHUNK (64 * 1024)
#define GPGPROC_MAX_FRAME (1024 * 1024)
/* Autocrypt-Gossip values in one view's status (view.c reads at most 100). */
#define GPGPROC_MAX_GOSSIP 1000
#define GPGPROC_HEADER 5
/* A message to render is held whole (crypto_view_render takes it so). */
#define GPGPROC_MAX_VIEW_INPUT (512u * 1024 * 1024)
#define GPGPROC_MAX_VIEW_OUTPUT \
	((size_t)CRYPTO_VIEW_MAX_PLAINTEXT + GPGPROC_MAX_VIEW_INPUT + 16u * 1024 * 1024)
#define GPGPROC_DEFAULT_TIMEOUT_MS 60000
#define GPGPROC_STOP_WAIT_MS 2000
/* Cached keys are listed again after this long (they expire by the clock). */
#define GPGPROC_KEY_CACHE_SECONDS 300

typedef enum {
	GPGPROC_FRAME_REQUEST = 1,	/* proxy -> worker: what to do */
	GPGPROC_FRAME_DATA = 2,		/* proxy -> worker: input */
	GPGPROC_FRAME_END = 3,		/* proxy -> worker: no more input */
	GPGPROC_FRAME_ABORT = 4,	/* proxy -> worker: the input failed */
	GPGPROC_FRAME_OUT = 5,		/* worker -> proxy: output */
	GPGPROC_FRAME_DONE = 6,		/* worker -> proxy: the answer */
	GPGPROC_FRAME_READY = 7,	/* worker -> proxy: started */
} gpgproc_frame;

#define GPGPROC_OP_VIEW 3

static void gpgproc_put_u32(GByteArray *b, uint32_t v)
{
	uint8_t p[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	g_byte_array_append(b, p, 4);
}

static uint32_t gpgproc_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A string or NULL: its length (0xffffffff for NULL) and its bytes. */
static void gpgproc_put_str(GByteArray *b, const char *s)
{
	if (s == NULL) {
		gpgproc_put_u32(b, UINT32_MAX);
		return;
	}
	size_t n = strlen(s);
	gpgproc_put_u32(b, (uint32_t)n);
	g_byte_array_append(b, (const uint8_t *)s, (guint)n);
}

typedef struct {
	const uint8_t *p;
	size_t len, pos;
	bool bad;
} gpgproc_reader;

static uint32_t gpgproc_read_u32(gpgproc_reader *r)
{
	if (r->bad || r->len - r->pos < 4) {
		r->bad = true;
		return 0;
	}
	uint32_t v = gpgproc_get_u32(r->p + r->pos);
	r->pos += 4;
	return v;
}

static uint8_t gpgproc_read_u8(gpgproc_reader *r)
{
	if (r->bad || r->pos >= r->len) {
		r->bad = true;
		return 0;
	}
	return r->p[r->pos++];
}

/* g_free; NULL for a NULL string (and when bad). */
static char *gpgproc_read_str(gpgproc_reader *r)
{
	uint32_t n = gpgproc_read_u32(r);
	if (r->bad || n == UINT32_MAX)
		return NULL;
	if (r->len - r->pos < n || memchr(r->p + r->pos, '\0', n) != NULL) {
		r->bad = true;
		return NULL;
	}
	char *s = g_strndup((const char *)r->p + r->pos, n);
	r->pos += n;
	return s;
}

static void gpgproc_frame_header(uint8_t *hdr, gpgproc_frame type, size_t len)
{
	hdr[0] = (uint8_t)type;
	hdr[1] = (uint8_t)(len >> 24);
	hdr[2] = (uint8_t)(len >> 16);
	hdr[3] = (uint8_t)(len >> 8);
	hdr[4] = (uint8_t)len;
}

/* ---- the pool (the proxy's side) ------------------------------------------------ */

typedef struct {
	pid_t pid;		/* 0: not running */
	int fd;			/* -1: not running */
	bool busy;		/* lent to an operation */
} gpgproc_slot;

static struct {
	GMutex lock;
	GCond freed;
	bool running;
	gpgproc_slot *slots;
	size_t n;
	char *home;
	char *exe;		/* what is started: see gpgproc_worker_exe */
	unsigned timeout_ms;
} gpgproc = { .timeout_ms = GPGPROC_DEFAULT_TIMEOUT_MS };

static __thread char gpgproc_error[256];

static const char *gpgproc_fail(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static const char *gpgproc_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(gpgproc_error, sizeof(gpgproc_error), fmt, ap);
	va_end(ap);
	return gpgproc_error;
}

void crypto_gpgproc_set_timeout(unsigned ms)
{
	g_mutex_lock(&gpgproc.lock);
	gpgproc.timeout_ms = ms > 0 ? ms : GPGPROC_DEFAULT_TIMEOUT_MS;
	g_mutex_unlock(&gpgproc.lock);
}

static unsigned gpgproc_timeout(void)
{
	g_mutex_lock(&gpgproc.lock);
	unsigned ms = gpgproc.timeout_ms;
	g_mutex_unlock(&gpgproc.lock);
	return ms;
}

bool crypto_gpgproc_running(void)
{
	g_mutex_lock(&gpgproc.lock);
	bool running = gpgproc.running;
	g_mutex_unlock(&gpgproc.lock);
	return running;
}

size_t crypto_gpgproc_pids(pid_t *pids_r, size_t n)
{
	g_mutex_lock(&gpgproc.lock);
	for (size_t i = 0; i < n && i < gpgproc.n; i++)
		pids_r[i] = gpgproc.slots[i].pid;
	size_t total = gpgproc.n;
	g_mutex_unlock(&gpgproc.lock);
	return total;
}

/* Ends a worker process for good and waits for it: no zombie is left. The
 * slot is the caller's (busy, or the pool stopping). */
static void gpgproc_kill(gpgproc_slot *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	g_mutex_lock(&gpgproc.lock);
	s->pid = 0;
	g_mutex_unlock(&gpgproc.lock);
}

/* Starts the process of slot s; its READY is awaited by gpgproc_await_ready. */
static int gpgproc_spawn(gpgproc_slot *s, const char **error_r)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		*error_r = gpgproc_fail("OpenPGP worker: socketpair: %s", strerror(errno));
		return -1;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	/* dup2 clears close-on-exec, even when sv[1] is already 3. */
	posix_spawn_file_actions_adddup2(&fa, sv[1], GPGPROC_FD);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	/* Nothing else of this process, even what lacks close-on-exec (a
	 * dup()ed client socket would stay open as long as the worker). */
	posix_spawn_file_actions_addclosefrom_np(&fa, GPGPROC_FD + 1);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	/* Its own process group: a Ctrl-C meant for sealpost does not end an
	 * operation under way; the worker ends when its socket closes. */
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
	bool self = strcmp(gpgproc.exe, "/proc/self/exe") == 0;
	char *argv[] = { self ? "sealpost" : CRYPTO_GPGPROC_WORKER_EXE, CRYPTO_GPGPROC_WORKER_ARG, gpgproc.home != NULL ? "--home" : NULL,
			 gpgproc.home, NULL };
	pid_t pid;
	/* glibc's posix_spawn shares the address space until exec (no page
	 * tables are copied), so it is cheap from the large process too. */
	int err = posix_spawn(&pid, gpgproc.exe, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(sv[1]);
	if (err != 0) {
		close(sv[0]);
		*error_r = gpgproc_fail("OpenPGP worker: cannot start: %s", strerror(err));
		return -1;
	}
	int flags = fcntl(sv[0], F_GETFL);
	fcntl(sv[0], F_SETFL, flags | O_NONBLOCK);
	g_mutex_lock(&gpgproc.lock);
	s->pid = pid;
	s->fd = sv[0];
	g_mutex_unlock(&gpgproc.lock);
	return 0;
}

/* Waits (bounded) for the READY frame of a freshly started process. */
static int gpgproc_await_ready(gpgproc_slot *s, unsigned timeout_ms, const char **error_r)
{
	uint8_t hdr[GPGPROC_HEADER];
	size_t got = 0;
	gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	while (got < sizeof(hdr)) {
		gint64 left = (deadline - g_get_monotonic_time()) / 1000;
		struct pollfd p = { s->fd, POLLIN, 0 };
		int r = left > 0 ? poll(&p, 1, (int)left) : 0;
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			*error_r = gpgproc_fail("OpenPGP worker: did not start within %u ms",
						timeout_ms);
			return -1;
		}
		ssize_t n = read(s->fd, hdr + got, sizeof(hdr) - got);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			*error_r = "OpenPGP worker: ended at its start (see its messages)";
			return -1;
		}
		got += (size_t)n;
	}
	if (hdr[0] != GPGPROC_FRAME_READY || gpgproc_get_u32(hdr + 1) != 0) {
		*error_r = "OpenPGP worker: unexpected greeting";
		return -1;
	}
	return 0;
}

static int gpgproc_start_slot(gpgproc_slot *s, const char **error_r)
{
	if (gpgproc_spawn(s, error_r) < 0)
		return -1;
	if (gpgproc_await_ready(s, gpgproc_timeout(), error_r) < 0) {
		gpgproc_kill(s);
		return -1;
	}
	return 0;
}

/* The program a worker runs: sealpost-gpgworker next to this executable,
 * built from the same sources and linking only what OpenPGP needs, so its
 * address space is small and every fork GPGME makes of it to start gpg is
 * cheap; else this executable itself (/proc/self/exe). g_free. */
static char *gpgproc_worker_exe(void)
{
	char *self = g_file_read_link("/proc/self/exe", NULL);
	if (self != NULL) {
		char *dir = g_path_get_dirname(self);
		char *exe = g_build_filename(dir, CRYPTO_GPGPROC_WORKER_EXE, NULL);
		g_free(dir);
		g_free(self);
		if (g_file_test(exe, G_FILE_TEST_IS_EXECUTABLE) &&
		    g_file_test(exe, G_FILE_TEST_IS_REGULAR))
			return exe;
		g_free(exe);
	}
	return g_strdup("/proc/self/exe");
}

int crypto_gpgproc_start(unsigned n, const char *gnupg_home, const char **error_r)
{
	if (n == 0)
		n = 2 * g_get_num_processors();
	if (n < 2)
		n = 2;
	g_mutex_lock(&gpgproc.lock);
	if (gpgproc.running) {
		g_mutex_unlock(&gpgproc.lock);
		*error_r = "the OpenPGP workers are running already";
		return -1;
	}
	gpgproc.home = g_strdup(gnupg_home);
	g_free(gpgproc.exe);
	gpgproc.exe = gpgproc_worker_exe();
	gpgproc.slots = g_new0(gpgproc_slot, n);
	gpgproc.n = n;
	for (size_t i = 0; i < n; i++)
		gpgproc.slots[i].fd = -1;
	g_mutex_unlock(&gpgproc.lock);
	/* All start at once; then each is awaited. */
	size_t started = 0;
	const char *error = NULL;
	for (size_t i = 0; i < n; i++)
		if (gpgproc_spawn(&gpgproc.slots[i], &error) < 0)
			break;
	for (size_t i = 0; i < n; i++) {
		gpgproc_slot *s = &gpgproc.slots[i];
		if (s->fd < 0)
			continue;
		if (gpgproc_await_ready(s, gpgproc_timeout(), &error) < 0)
			gpgproc_kill(s);
		else
			started++;
	}
	if (started == 0) {
		*error_r = error != NULL ? error : "OpenPGP worker: none started";
		g_free(gpgproc.slots);
		gpgproc.slots = NULL;
		gpgproc.n = 0;
		g_free(gpgproc.home);
		gpgproc.home = NULL;
		g_free(gpgproc.exe);
		gpgproc.exe = NULL;
		return -1;
	}
	/* A process that did not start is tried again when it is borrowed. */
	g_mutex_lock(&gpgproc.lock);
	gpgproc.running = true;
	g_mutex_unlock(&gpgproc.lock);
	return 0;
}

void crypto_gpgproc_stop(void)
{
	g_mutex_lock(&gpgproc.lock);
	if (!gpgproc.running) {
		g_mutex_unlock(&gpgproc.lock);
		return;
	}
	gpgproc.running = false;
	g_mutex_unlock(&gpgproc.lock);
	/* A closed socket is the worker's signal to exit; SIGKILL after a while. */
	for (size_t i = 0; i < gpgproc.n; i++) {
		gpgproc_slot *s = &gpgproc.slots[i];
		if (s->fd >= 0)
			close(s->fd);
		s->fd = -1;
	}
	gint64 deadline = g_get_monotonic_time() + GPGPROC_STOP_WAIT_MS * 1000;
	for (size_t i = 0; i < gpgproc.n; i++) {
		gpgproc_slot *s = &gpgproc.slots[i];
		while (s->pid > 0 && g_get_monotonic_time() < deadline) {
			pid_t r = waitpid(s->pid, NULL, WNOHANG);
			if (r == s->pid || (r < 0 && errno != EINTR))
				s->pid = 0;
			else
				g_usleep(5000);
		}
		gpgproc_kill(s);
	}
	g_mutex_lock(&gpgproc.lock);
	g_free(gpgproc.slots);
	gpgproc.slots = NULL;
	gpgproc.n = 0;
	g_free(gpgproc.home);
	gpgproc.home = NULL;
	g_free(gpgproc.exe);
	gpgproc.exe = NULL;
	g_cond_broadcast(&gpgproc.freed);
	g_mutex_unlock(&gpgproc.lock);
}

/* An idle worker never writes: readable or hung up means it is gone. */
static bool gpgproc_idle_broken(const gpgproc_slot *s)
{
	struct pollfd p = { s->fd, POLLIN, 0 };
	return poll(&p, 1, 0) != 0;
}

static void gpgproc_give_back(gpgproc_slot *s, bool broken);

static gpgproc_slot *gpgproc_borrow(const char **error_r)
{
	g_mutex_lock(&gpgproc.lock);
	gint64 deadline = g_get_monotonic_time() + (gint64)gpgproc.timeout_ms * 1000;
	gpgproc_slot *s = NULL;
	while (s == NULL) {
		if (!gpgproc.running) {
			g_mutex_unlock(&gpgproc.lock);
			*error_r = "the OpenPGP workers are stopped";
			return NULL;
		}
		/* A running process first; a stopped one is started below. */
		for (size_t i = 0; i < gpgproc.n && s == NULL; i++)
			if (!gpgproc.slots[i].busy && gpgproc.slots[i].fd >= 0)
				s = &gpgproc.slots[i];
		for (size_t i = 0; i < gpgproc.n && s == NULL; i++)
			if (!gpgproc.slots[i].busy)
				s = &gpgproc.slots[i];
		if (s == NULL && !g_cond_wait_until(&gpgproc.freed, &gpgproc.lock, deadline)) {
			g_mutex_unlock(&gpgproc.lock);
			*error_r = "all OpenPGP workers stayed busy";
			return NULL;
		}
	}
	s->busy = true;
	/* Idle processes that died are waited for now, not left as zombies
	 * until their turn comes. */
	size_t n_dead = 0;
	gpgproc_slot **dead = g_new(gpgproc_slot *, gpgproc.n);
	for (size_t i = 0; i < gpgproc.n; i++) {
		gpgproc_slot *d = &gpgproc.slots[i];
		if (d != s && !d->busy && d->fd >= 0 && gpgproc_idle_broken(d)) {
			d->busy = true;
			dead[n_dead++] = d;
		}
	}
	g_mutex_unlock(&gpgproc.lock);
	for (size_t i = 0; i < n_dead; i++)
		gpgproc_give_back(dead[i], true);
	g_free(dead);
	if (s->fd >= 0 && gpgproc_idle_broken(s))
		gpgproc_kill(s);
	if (s->fd < 0 && gpgproc_start_slot(s, error_r) < 0) {
		g_mutex_lock(&gpgproc.lock);
		s->busy = false;
		g_cond_signal(&gpgproc.freed);
		g_mutex_unlock(&gpgproc.lock);
		return NULL;
	}
	return s;
}

/* broken: the process failed or its stream is in an unknown state; it is
 * ended now and started again at its next use. */
static void gpgproc_give_back(gpgproc_slot *s, bool broken)
{
	if (broken)
		gpgproc_kill(s);
	g_mutex_lock(&gpgproc.lock);
	s->busy = false;
	g_cond_signal(&gpgproc.freed);
	g_mutex_unlock(&gpgproc.lock);
}

/* ---- one exchange (the proxy's side) ------------------------------------------------ */

typedef struct {
	int fd;
	unsigned timeout_ms;
	/* outgoing: one frame at a time */
	uint8_t *obuf;
	size_t olen, ooff;
	/* incoming: the frame being read */
	uint8_t ihdr[GPGPROC_HEADER];
	size_t ihdr_got;
	uint8_t *ibuf;
	size_t ilen, igot, icap;
} gpgproc_pump;

/* Reads what is there; for each complete frame calls on_frame. 0 when the
 * socket would block, -1 on EOF, error or a bad frame. */
static int gpgproc_pump_read(gpgproc_pump *p,
			     int (*on_frame)(void *ctx, gpgproc_frame type, uint8_t *data,
					     size_t len),
			     void *ctx, const char **error_r)
{
	for (;;) {
		ssize_t n;
		if (p->ihdr_got < GPGPROC_HEADER) {
			n = read(p->fd, p->ihdr + p->ihdr_got, GPGPROC_HEADER - p->ihdr_got);
		} else {
			n = read(p->fd, p->ibuf + p->igot, p->ilen - p->igot);
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0) {
			*error_r = gpgproc_fail("OpenPGP worker: reading: %s", strerror(errno));
			return -1;
		}
		if (n == 0) {
			*error_r = "the OpenPGP worker process ended during the operation";
			return -1;
		}
		if (p->ihdr_got < GPGPROC_HEADER) {
			p->ihdr_got += (size_t)n;
			if (p->ihdr_got < GPGPROC_HEADER)
				continue;
			p->ilen = gpgproc_get_u32(p->ihdr + 1);
			p->igot = 0;
			if (p->ilen > GPGPROC_MAX_FRAME) {
				*error_r = "OpenPGP worker: oversized frame";
				return -1;
			}
			if (p->ilen > p->icap) {
				p->ibuf = g_realloc(p->ibuf, p->ilen);
				p->icap = p->ilen;
			}
		} else {
			p->igot += (size_t)n;
		}
		if (p->igot == p->ilen) {
			p->ihdr_got = 0;
			if (on_frame(ctx, (gpgproc_frame)p->ihdr[0], p->ibuf, p->ilen) < 0) {
				*error_r = "OpenPGP worker: unexpected frame";
				return -1;
			}
		}
	}
}

typedef struct {
	crypto_gpgproc_write_fn write;
	void *write_ctx;
	bool write_failed;
	bool done;
	GByteArray *answer;
} gpgproc_exchange;

static int gpgproc_exchange_frame(void *ctx, gpgproc_frame type, uint8_t *data, size_t len)
{
	gpgproc_exchange *x = ctx;
	if (x->done)
		return -1;
	if (type == GPGPROC_FRAME_OUT) {
		if (!x->write_failed && len > 0 && x->write(x->write_ctx, data, len) < 0)
			x->write_failed = true;
		return 0;
	}
	if (type == GPGPROC_FRAME_DONE) {
		x->done = true;
		g_byte_array_append(x->answer, data, (guint)len);
		return 0;
	}
	return -1;
}

/* One operation on a borrowed process: sends request, then the input read
 * from read while it passes the output to write, until the answer came and
 * the input was closed. -1 when the process failed (it must be killed). */
static int gpgproc_exchange_run(gpgproc_slot *s, const GByteArray *request,
				crypto_gpgproc_read_fn read, void *read_ctx,
				crypto_gpgproc_write_fn write, void *write_ctx,
				GByteArray *answer, const char **error_r)
{
	gpgproc_pump p = { .fd = s->fd, .timeout_ms = gpgproc_timeout() };
	gpgproc_exchange x = { .write = write, .write_ctx = write_ctx, .answer = answer };
	p.obuf = g_malloc(GPGPROC_HEADER + (request->len > GPGPROC_CHUNK ? request->len
					   : GPGPROC_CHUNK));
	gpgproc_frame_header(p.obuf, GPGPROC_FRAME_REQUEST, request->len);
	memcpy(p.obuf + GPGPROC_HEADER, request->data, request->len);
	p.olen = GPGPROC_HEADER + request->len;
	bool input_closed = false;
	/* END or ABORT, due once the last DATA frame is sent. */
	gpgproc_frame closing = GPGPROC_FRAME_DATA;
	int ret = -1;
	for (;;) {
		if (p.ooff == p.olen && !input_closed) {
			/* The next input frame, as full as the source allows; after
			 * the answer, or when the output cannot be delivered, the
			 * input is closed at once. */
			gpgproc_frame type = GPGPROC_FRAME_DATA;
			size_t len = 0;
			if (x.done)
				type = GPGPROC_FRAME_END;
			else if (x.write_failed)
				type = GPGPROC_FRAME_ABORT;
			else if (closing != GPGPROC_FRAME_DATA)
				type = closing;
			while (type == GPGPROC_FRAME_DATA && closing == GPGPROC_FRAME_DATA &&
			       len < GPGPROC_CHUNK) {
				ssize_t n = read(read_ctx, p.obuf + GPGPROC_HEADER + len,
						 GPGPROC_CHUNK - len);
				if (n > 0)
					len += (size_t)n;
				else
					closing = n < 0 ? GPGPROC_FRAME_ABORT : GPGPROC_FRAME_END;
			}
			if (type == GPGPROC_FRAME_DATA && len == 0)
				type = closing;
			input_closed = type != GPGPROC_FRAME_DATA;
			gpgproc_frame_header(p.obuf, type, len);
			p.olen = GPGPROC_HEADER + len;
			p.ooff = 0;
		}
		if (x.done && input_closed && p.ooff == p.olen) {
			ret = 0;
			break;
		}
		struct pollfd pfd = { p.fd, POLLIN, 0 };
		if (p.ooff < p.olen)
			pfd.events |= POLLOUT;
		int r = poll(&pfd, 1, (int)p.timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*error_r = gpgproc_fail("OpenPGP worker: poll: %s", strerror(errno));
			break;
		}
		if (r == 0) {
			*error_r = gpgproc_fail("the OpenPGP worker process did not answer within "
						"%u s", p.timeout_ms / 1000);
			break;
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			if (gpgproc_pump_read(&p, gpgproc_exchange_frame, &x, error_r) < 0)
				break;
		}
		if ((pfd.revents & POLLOUT) && p.ooff < p.olen) {
			ssize_t n = send(p.fd, p.obuf + p.ooff, p.olen - p.ooff,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				*error_r = "the OpenPGP worker process ended during the operation";
				break;
			}
			if (n > 0)
				p.ooff += (size_t)n;
		}
	}
	g_free(p.obuf);
	g_free(p.ibuf);
	return ret;
}

int crypto_gpgproc_run(crypto_gpgproc_op op, const char *const *recipients,
		       const char *signer, crypto_gpgproc_read_fn read, void *read_ctx,
		       crypto_gpgproc_write_fn write, void *write_ctx,
		       crypto_gpgproc_result *result_r, const char **error_r)
{
	memset(result_r, 0, sizeof(*result_r));
	GByteArray *req = g_byte_array_new();
	uint8_t opb = (uint8_t)op;
	g_byte_array_append(req, &opb, 1);
	gpgproc_put_str(req, signer);
	uint32_t n = 0;
	while (recipients != NULL && recipients[n] != NULL)
		n++;
	gpgproc_put_u32(req, n);
	for (uint32_t i = 0; i < n; i++)
		gpgproc_put_str(req, recipients[i]);
	if (req->len > GPGPROC_MAX_FRAME) {
		g_byte_array_unref(req);
		*error_r = "too many recipients for one operation";
		return -1;
	}
	gpgproc_slot *s = gpgproc_borrow(error_r);
	if (s == NULL) {
		g_byte_array_unref(req);
		return -1;
	}
	GByteArray *answer = g_byte_array_new();
	int ret = gpgproc_exchange_run(s, req, read, read_ctx, write, write_ctx, answer, error_r);
	if (ret == 0) {
		gpgproc_reader r = { answer->data, answer->len, 0, false };
		result_r->err = gpgproc_read_u32(&r);
		result_r->invalid_recipient = gpgproc_read_u32(&r);
		result_r->signed_ok = gpgproc_read_u8(&r) != 0;
		result_r->hash_algo = (int)gpgproc_read_u32(&r);
		if (r.bad || r.pos != r.len) {
			*error_r = "OpenPGP worker: malformed answer";
			ret = -1;
		}
	}
	gpgproc_give_back(s, ret < 0);
	g_byte_array_unref(answer);
	g_byte_array_unref(req);
	return ret;
}

typedef struct {
	const uint8_t *data;
	size_t len, pos;
} gpgproc_mem_in;

static ssize_t gpgproc_mem_read(void *ctx, void *buf, size_t size)
{
	gpgproc_mem_in *m = ctx;
	size_t n = m->len - m->pos < size ? m->len - m->pos : size;
	memcpy(buf, m->data + m->pos, n);
	m->pos += n;
	return (ssize_t)n;
}

typedef struct {
	GByteArray *buf;
	size_t max;
	bool overflow;
} gpgproc_mem_out;

static ssize_t gpgproc_mem_write(void *ctx, const void *data, size_t size)
{
	gpgproc_mem_out *m = ctx;
	if (size > m->max - m->buf->len) {
		m->overflow = true;
		errno = EFBIG;
		return -1;
	}
	g_byte_array_append(m->buf, data, (guint)size);
	return (ssize_t)size;
}

crypto_view_result crypto_gpgproc_view(const uint8_t *msg, size_t len,
				       const char *pinned_signature,
				       GByteArray **view_r, crypto_view_status *status_r)
{
	*view_r = NULL;
	memset(status_r, 0, sizeof(*status_r));
	const char *error = NULL;
	if (len > GPGPROC_MAX_VIEW_INPUT) {
		status_r->reason = g_strdup("the message is too large to decrypt");
		return CRYPTO_VIEW_TEMPFAIL;
	}
	GByteArray *req = g_byte_array_new();
	uint8_t opb = GPGPROC_OP_VIEW;
	g_byte_array_append(req, &opb, 1);
	gpgproc_put_str(req, pinned_signature);
	gpgproc_slot *s = gpgproc_borrow(&error);
	if (s == NULL) {
		g_byte_array_unref(req);
		status_r->reason = g_strdup(error);
		return CRYPTO_VIEW_TEMPFAIL;
	}
	gpgproc_mem_in in = { msg, len, 0 };
	gpgproc_mem_out out = { g_byte_array_new(), GPGPROC_MAX_VIEW_OUTPUT, false };
	GByteArray *answer = g_byte_array_new();
	crypto_view_result ret = CRYPTO_VIEW_TEMPFAIL;
	int r = gpgproc_exchange_run(s, req, gpgproc_mem_read, &in, gpgproc_mem_write, &out,
				     answer, &error);
	bool broken = r < 0;
	if (r == 0 && out.overflow) {
		error = "the decrypted view is too large";
		r = -1;
	}
	if (r == 0) {
		gpgproc_reader rd = { answer->data, answer->len, 0, false };
		uint8_t result = gpgproc_read_u8(&rd);
		status_r->kind = (crypto_view_kind)gpgproc_read_u8(&rd);
		status_r->failure = (crypto_view_failure)gpgproc_read_u8(&rd);
		uint8_t flags = gpgproc_read_u8(&rd);
		status_r->reason = gpgproc_read_str(&rd);
		status_r->signature = gpgproc_read_str(&rd);
		uint32_t n_gossip = gpgproc_read_u32(&rd);
		if (n_gossip > GPGPROC_MAX_GOSSIP) {
			rd.bad = true;
		} else if (n_gossip > 0) {
			char **g = g_new0(char *, n_gossip + 1);
			bool hole = false;
			for (uint32_t i = 0; i < n_gossip && !rd.bad; i++)
				hole |= (g[i] = gpgproc_read_str(&rd)) == NULL;
			if (hole || rd.bad) {
				for (uint32_t i = 0; i < n_gossip; i++)
					g_free(g[i]);
				g_free(g);
				rd.bad = true;
			} else {
				status_r->gossip = g;
			}
		}
		status_r->encrypted = flags & 1;
		status_r->decrypted = flags & 2;
		status_r->inner_from_mismatch = flags & 4;
		status_r->transient = flags & 8;
		if (rd.bad || rd.pos != rd.len || result > CRYPTO_VIEW_INVALID ||
		    (result == CRYPTO_VIEW_RENDERED) != ((flags & 16) != 0)) {
			crypto_view_status_clear(status_r);
			error = "OpenPGP worker: malformed answer";
			broken = true;
		} else {
			ret = (crypto_view_result)result;
		}
	}
	if (ret == CRYPTO_VIEW_RENDERED) {
		*view_r = out.buf;
		out.buf = NULL;
	} else if (ret == CRYPTO_VIEW_TEMPFAIL && status_r->reason == NULL) {
		status_r->reason = g_strdup(error != NULL ? error : "OpenPGP worker failed");
	}
	gpgproc_give_back(s, broken);
	if (out.buf != NULL)
		g_byte_array_unref(out.buf);
	g_byte_array_unref(answer);
	g_byte_array_unref(req);
	return ret;
}

/* ---- the worker process --------------------------------------------------------- */

/* Files whose change means cached keys may be stale (as keystore_keys). */
static const char *const gpgproc_keyring_files[] = {
	"pubring.kbx", "pubring.gpg", "trustdb.gpg", "private-keys-v1.d",
};
#define GPGPROC_N_FILES G_N_ELEMENTS(gpgproc_keyring_files)

typedef struct {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
} gpgproc_file_state;

typedef struct {
	int fd;
	crypto_worker *w;		/* the in-process GPGME context */
	char *home;
	gpgproc_file_state files[GPGPROC_N_FILES];
	gint64 cached_at;		/* monotonic seconds */
	GHashTable *pub, *sec;		/* fingerprint -> gpgme_key_t */
	/* the input of the operation under way */
	uint8_t *in;
	size_t in_len, in_off;
	bool in_closed, in_aborted;
} gpgproc_worker;

/* The proxy is gone or speaks nonsense: nothing sensible is left to do. */
static _Noreturn void gpgproc_worker_lost(void)
{
	_exit(1);
}

static void gpgproc_write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			gpgproc_worker_lost();
		p += n;
		len -= (size_t)n;
	}
}

static void gpgproc_send(int fd, gpgproc_frame type, const void *data, size_t len)
{
	uint8_t hdr[GPGPROC_HEADER];
	gpgproc_frame_header(hdr, type, len);
	gpgproc_write_all(fd, hdr, sizeof(hdr));
	if (len > 0)
		gpgproc_write_all(fd, data, len);
}

/* false at a clean EOF before any byte. */
static bool gpgproc_read_all(int fd, void *data, size_t len, bool eof_ok)
{
	uint8_t *p = data;
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 && got == 0 && eof_ok)
			return false;
		if (n <= 0)
			gpgproc_worker_lost();
		got += (size_t)n;
	}
	return true;
}

/* One frame; false at EOF between frames. *data_r: g_free. */
static bool gpgproc_recv(int fd, gpgproc_frame *type_r, uint8_t **data_r, size_t *len_r)
{
	uint8_t hdr[GPGPROC_HEADER];
	if (!gpgproc_read_all(fd, hdr, sizeof(hdr), true))
		return false;
	size_t len = gpgproc_get_u32(hdr + 1);
	if (len > GPGPROC_MAX_FRAME)
		gpgproc_worker_lost();
	uint8_t *data = g_malloc(len > 0 ? len : 1);
	if (len > 0)
		gpgproc_read_all(fd, data, len, false);
	*type_r = (gpgproc_frame)hdr[0];
	*data_r = data;
	*len_r = len;
	return true;
}

/* GPGME's input: the DATA frames until END (0) or ABORT (-1). */
static ssize_t gpgproc_worker_read(void *handle, void *buf, size_t size)
{
	gpgproc_worker *wk = handle;
	while (wk->in_off == wk->in_len) {
		if (wk->in_closed) {
			if (wk->in_aborted) {
				errno = EIO;
				return -1;
			}
			return 0;
		}
		g_free(wk->in);
		wk->in = NULL;
		wk->in_len = wk->in_off = 0;
		gpgproc_frame type;
		if (!gpgproc_recv(wk->fd, &type, &wk->in, &wk->in_len))
			gpgproc_worker_lost();
		if (type == GPGPROC_FRAME_END) {
			wk->in_closed = true;
			wk->in_len = 0;
		} else if (type == GPGPROC_FRAME_ABORT) {
			wk->in_closed = wk->in_aborted = true;
			wk->in_len = 0;
		} else if (type != GPGPROC_FRAME_DATA) {
			gpgproc_worker_lost();
		}
	}
	size_t n = wk->in_len - wk->in_off < size ? wk->in_len - wk->in_off : size;
	memcpy(buf, wk->in + wk->in_off, n);
	wk->in_off += n;
	return (ssize_t)n;
}

/* Reads (and drops) the rest of the input, so the stream is at the next
 * request. */
static void gpgproc_worker_drain(gpgproc_worker *wk)
{
	uint8_t buf[4096];
	while (gpgproc_worker_read(wk, buf, sizeof(buf)) > 0)
		;
	g_free(wk->in);
	wk->in = NULL;
	wk->in_len = wk->in_off = 0;
}

static ssize_t gpgproc_worker_write(void *handle, const void *buf, size_t size)
{
	gpgproc_worker *wk = handle;
	const uint8_t *p = buf;
	for (size_t off = 0; off < size; off += GPGPROC_CHUNK) {
		size_t n = size - off < GPGPROC_CHUNK ? size - off : GPGPROC_CHUNK;
		gpgproc_send(wk->fd, GPGPROC_FRAME_OUT, p + off, n);
	}
	return (ssize_t)size;
}

static void gpgproc_keys_snapshot(const gpgproc_worker *wk, gpgproc_file_state *out)
{
	for (size_t i = 0; i < GPGPROC_N_FILES; i++) {
		struct stat st;
		char path[4096];
		memset(&out[i], 0, sizeof(out[i]));
		snprintf(path, sizeof(path), "%s/%s", wk->home, gpgproc_keyring_files[i]);
		if (stat(path, &st) < 0)
			continue;
		out[i].exists = true;
		out[i].dev = st.st_dev;
		out[i].ino = st.st_ino;
		out[i].size = st.st_size;
		out[i].mtime = st.st_mtim;
		out[i].ctime = st.st_ctim;
	}
}

/* Drops the cached keys when a keyring file changed, or they are old. */
static void gpgproc_keys_check_fresh(gpgproc_worker *wk)
{
	gpgproc_file_state now[GPGPROC_N_FILES];
	gpgproc_keys_snapshot(wk, now);
	gint64 t = g_get_monotonic_time() / G_USEC_PER_SEC;
	if (memcmp(now, wk->files, sizeof(now)) == 0 &&
	    t - wk->cached_at <= GPGPROC_KEY_CACHE_SECONDS)
		return;
	memcpy(wk->files, now, sizeof(now));
	wk->cached_at = t;
	g_hash_table_remove_all(wk->pub);
	g_hash_table_remove_all(wk->sec);
}

static bool gpgproc_fpr_ok(const char *fpr)
{
	size_t n = strlen(fpr);
	if (n < 16 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!g_ascii_isxdigit(fpr[i]))
			return false;
	return true;
}

/* The key of fpr from the cache or the keyring; a borrowed reference. */
static gpgme_error_t gpgproc_keys_get(gpgproc_worker *wk, const char *fpr, bool secret,
				      gpgme_key_t *key_r)
{
	*key_r = NULL;
	gpgme_err_code_t missing = secret ? GPG_ERR_NO_SECKEY : GPG_ERR_NO_PUBKEY;
	if (!gpgproc_fpr_ok(fpr))
		return gpg_error(missing);
	GHashTable *table = secret ? wk->sec : wk->pub;
	gpgme_key_t key = g_hash_table_lookup(table, fpr);
	if (key != NULL) {
		*key_r = key;
		return 0;
	}
	gpgme_error_t err = gpgme_get_key(wk->w->ctx, fpr, &key, secret ? 1 : 0);
	if (gpgme_err_code(err) == GPG_ERR_EOF)
		return gpg_error(missing);
	if (err != 0)
		return err;
	g_hash_table_insert(table, g_strdup(fpr), key);
	*key_r = key;
	return 0;
}

static void gpgproc_key_unref(gpointer p)
{
	gpgme_key_unref(p);
}

static void gpgproc_worker_stream_op(gpgproc_worker *wk, gpgproc_reader *r, crypto_gpgproc_op op)
{
	crypto_gpgproc_result res = { 0 };
	char *signer_fpr = gpgproc_read_str(r);
	uint32_t n = gpgproc_read_u32(r);
	if (r->bad || n > 10000)
		gpgproc_worker_lost();
	gpgme_key_t *keys = g_new0(gpgme_key_t, n + 1);
	char **fprs = g_new0(char *, n + 1);
	for (uint32_t i = 0; i < n; i++)
		fprs[i] = gpgproc_read_str(r);
	if (r->bad || r->pos != r->len)
		gpgproc_worker_lost();
	gpgproc_keys_check_fresh(wk);
	gpgme_key_t signer = NULL;
	gpgme_error_t err = 0;
	if (signer_fpr != NULL)
		err = gpgproc_keys_get(wk, signer_fpr, true, &signer);
	for (uint32_t i = 0; i < n && err == 0; i++)
		err = fprs[i] != NULL ? gpgproc_keys_get(wk, fprs[i], false, &keys[i])
			: gpg_error(GPG_ERR_NO_PUBKEY);
	if (err == 0 && op == CRYPTO_GPGPROC_ENCRYPT && n == 0)
		err = gpg_error(GPG_ERR_NO_PUBKEY);
	if (err == 0 && op == CRYPTO_GPGPROC_SIGN && signer == NULL)
		err = gpg_error(GPG_ERR_NO_SECKEY);
	if (err == 0)
		crypto_gpgproc_run_local(wk->w->ctx, op, keys, signer, gpgproc_worker_read, wk,
					 gpgproc_worker_write, wk, &res);
	else
		res.err = err;
	GByteArray *answer = g_byte_array_new();
	gpgproc_put_u32(answer, res.err);
	gpgproc_put_u32(answer, res.invalid_recipient);
	uint8_t ok = res.signed_ok ? 1 : 0;
	g_byte_array_append(answer, &ok, 1);
	gpgproc_put_u32(answer, (uint32_t)res.hash_algo);
	gpgproc_send(wk->fd, GPGPROC_FRAME_DONE, answer->data, answer->len);
	g_byte_array_unref(answer);
	gpgproc_worker_drain(wk);
	for (uint32_t i = 0; i < n; i++)
		g_free(fprs[i]);
	g_free(fprs);
	g_free(keys);
	g_free(signer_fpr);
}

static void gpgproc_worker_view(gpgproc_worker *wk, gpgproc_reader *r)
{
	char *pinned = gpgproc_read_str(r);
	if (r->bad || r->pos != r->len)
		gpgproc_worker_lost();
	GByteArray *msg = g_byte_array_new();
	uint8_t buf[GPGPROC_CHUNK];
	bool too_big = false;
	for (;;) {
		ssize_t n = gpgproc_worker_read(wk, buf, sizeof(buf));
		if (n <= 0)
			break;
		if ((size_t)n > GPGPROC_MAX_VIEW_INPUT - msg->len)
			too_big = true;
		if (!too_big)
			g_byte_array_append(msg, buf, (guint)n);
	}
	bool aborted = wk->in_aborted;
	gpgproc_worker_drain(wk);
	crypto_view_status st = { 0 };
	GByteArray *view = NULL;
	crypto_view_result res;
	if (aborted || too_big) {
		res = CRYPTO_VIEW_TEMPFAIL;
		st.reason = g_strdup(too_big ? "the message is too large to decrypt"
				     : "the message did not arrive whole");
	} else {
		res = crypto_view_render(wk->w, CRYPTO_DECRYPT_ROOT, msg->data, msg->len, pinned,
					 &view, &st);
	}
	g_byte_array_unref(msg);
	bool has_view = res == CRYPTO_VIEW_RENDERED && view != NULL;
	if (has_view)
		gpgproc_worker_write(wk, view->data, view->len);
	GByteArray *answer = g_byte_array_new();
	uint8_t head[4] = {
		(uint8_t)res, (uint8_t)st.kind, (uint8_t)st.failure,
		(uint8_t)((st.encrypted ? 1 : 0) | (st.decrypted ? 2 : 0) |
			  (st.inner_from_mismatch ? 4 : 0) | (st.transient ? 8 : 0) |
			  (has_view ? 16 : 0)),
	};
	g_byte_array_append(answer, head, sizeof(head));
	gpgproc_put_str(answer, st.reason);
	gpgproc_put_str(answer, st.signature);
	guint n_gossip = st.gossip != NULL ? g_strv_length(st.gossip) : 0;
	gpgproc_put_u32(answer, n_gossip);
	for (guint i = 0; i < n_gossip; i++)
		gpgproc_put_str(answer, st.gossip[i]);
	gpgproc_send(wk->fd, GPGPROC_FRAME_DONE, answer->data, answer->len);
	g_byte_array_unref(answer);
	if (view != NULL)
		g_byte_array_unref(view);
	crypto_view_status_clear(&st);
	g_free(pinned);
}

int crypto_gpgproc_worker_main(int argc, char **argv)
{
	const char *home = argc >= 4 && strcmp(argv[2], "--home") == 0 ? argv[3] : NULL;
	signal(SIGPIPE, SIG_IGN);
	/* Not for gpg: GPGME closes what it does not pass, but be sure. */
	if (fcntl(GPGPROC_FD, F_SETFD, FD_CLOEXEC) < 0) {
		fprintf(stderr, "sealpost: %s is started by sealpost only\n", CRYPTO_GPGPROC_WORKER_ARG);
		return 2;
	}
	const char *error = NULL;
	if (keystore_init(home, &error) < 0) {
		fprintf(stderr, "sealpost OpenPGP worker: %s\n", error);
		return 1;
	}
	crypto_init();
	gpgproc_worker wk = { .fd = GPGPROC_FD };
	wk.w = crypto_worker_new(&error);
	if (wk.w == NULL) {
		fprintf(stderr, "sealpost OpenPGP worker: %s\n", error);
		crypto_shutdown();
		return 1;
	}
	if (home != NULL) {
		wk.home = g_strdup(home);
	} else {
		const char *env = g_getenv("GNUPGHOME");
		wk.home = env != NULL ? g_strdup(env)
			: g_build_filename(g_get_home_dir(), ".gnupg", NULL);
	}
	wk.pub = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, gpgproc_key_unref);
	wk.sec = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, gpgproc_key_unref);
	gpgproc_keys_snapshot(&wk, wk.files);
	wk.cached_at = g_get_monotonic_time() / G_USEC_PER_SEC;
	gpgproc_send(wk.fd, GPGPROC_FRAME_READY, NULL, 0);
	for (;;) {
		gpgproc_frame type;
		uint8_t *data;
		size_t len;
		if (!gpgproc_recv(wk.fd, &type, &data, &len))
			break;
		if (type != GPGPROC_FRAME_REQUEST || len < 1)
			gpgproc_worker_lost();
		gpgproc_reader r = { data, len, 1, false };
		wk.in_closed = wk.in_aborted = false;
		wk.in_len = wk.in_off = 0;
		if (data[0] == CRYPTO_GPGPROC_ENCRYPT || data[0] == CRYPTO_GPGPROC_SIGN)
			gpgproc_worker_stream_op(&wk, &r, (crypto_gpgproc_op)data[0]);
		else if (data[0] == GPGPROC_OP_VIEW)
			gpgproc_worker_view(&wk, &r);
		else
			gpgproc_worker_lost();
		g_free(data);
	}
	g_hash_table_destroy(wk.pub);
	g_hash_table_destroy(wk.sec);
	g_free(wk.home);
	crypto_worker_free(&wk.w);
	crypto_shutdown();
	return 0;
}

/* ---- in-process (the worker's, and the proxy's without a pool) ------------------- */

void crypto_gpgproc_run_local(gpgme_ctx_t ctx, crypto_gpgproc_op op, gpgme_key_t *recipients,
			      gpgme_key_t signer, crypto_gpgproc_read_fn read, void *read_ctx,
			      crypto_gpgproc_write_fn write, void *write_ctx,
			      crypto_gpgproc_result *result_r)
{
	memset(result_r, 0, sizeof(*result_r));
	struct gpgme_data_cbs in_cbs = { .read = read };
	struct gpgme_data_cbs out_cbs = { .write = write };
	gpgme_data_t in = NULL, out = NULL;
	gpgme_error_t err = gpgme_data_new_from_cbs(&in, &in_cbs, read_ctx);
	if (err == 0)
		err = gpgme_data_new_from_cbs(&out, &out_cbs, write_ctx);
	gpgme_signers_clear(ctx);
	if (err == 0 && signer != NULL)
		err = gpgme_signers_add(ctx, signer);
	if (err == 0 && op == CRYPTO_GPGPROC_ENCRYPT) {
		err = signer != NULL
			? gpgme_op_encrypt_sign(ctx, recipients, GPGME_ENCRYPT_ALWAYS_TRUST, in, out)
			: gpgme_op_encrypt(ctx, recipients, GPGME_ENCRYPT_ALWAYS_TRUST, in, out);
		gpgme_encrypt_result_t er = err == 0 ? gpgme_op_encrypt_result(ctx) : NULL;
		if (er != NULL && er->invalid_recipients != NULL)
			result_r->invalid_recipient = er->invalid_recipients->reason != 0
				? er->invalid_recipients->reason : gpg_error(GPG_ERR_UNUSABLE_PUBKEY);
	} else if (err == 0 && op == CRYPTO_GPGPROC_SIGN) {
		err = gpgme_op_sign(ctx, in, out, GPGME_SIG_MODE_DETACH);
		gpgme_sign_result_t sr = err == 0 ? gpgme_op_sign_result(ctx) : NULL;
		if (sr != NULL && sr->signatures != NULL && sr->invalid_signers == NULL) {
			result_r->signed_ok = true;
			result_r->hash_algo = sr->signatures->hash_algo;
		}
	}
	gpgme_signers_clear(ctx);
	result_r->err = err;
	if (in != NULL)
		gpgme_data_release(in);
	if (out != NULL)
		gpgme_data_release(out);
}
