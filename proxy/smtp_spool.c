/* smtp_spool: message storage for one SMTP transaction. Small messages stay
 * in memory; big ones go to a file nobody else can open (O_TMPFILE, or
 * created 0600 and unlinked at once), so nothing is left behind on a crash. */
#include "smtp_spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct smtp_spool {
	char *dir;
	size_t memory_limit;
	uint8_t *mem;
	size_t mem_len, mem_cap;
	int fd;			/* -1 while in memory */
	uint64_t size;
	uint64_t read_pos;	/* for reading back from memory */
	char error[256];
};

smtp_spool *smtp_spool_new(const char *dir, size_t memory_limit)
{
	smtp_spool *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->fd = -1;
	s->memory_limit = memory_limit;
	if (dir != NULL) {
		s->dir = strdup(dir);
		if (s->dir == NULL) {
			free(s);
			return NULL;
		}
	}
	return s;
}

void smtp_spool_clear(smtp_spool *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	/* A big buffer is not kept around between messages. */
	if (s->mem_cap > 256 * 1024) {
		free(s->mem);
		s->mem = NULL;
		s->mem_cap = 0;
	}
	s->mem_len = 0;
	s->size = 0;
	s->read_pos = 0;
}

void smtp_spool_free(smtp_spool **sp)
{
	smtp_spool *s = *sp;
	if (s == NULL)
		return;
	if (s->fd >= 0)
		close(s->fd);
	free(s->mem);
	free(s->dir);
	free(s);
	*sp = NULL;
}

static int smtp_spool_open_in(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	/* File systems without O_TMPFILE: create, then unlink right away. */
	char path[4096];
	snprintf(path, sizeof(path), "%s/sealpost-spool-XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -1;
	unlink(path);
	fchmod(fd, 0600);
	return fd;
}

static int smtp_write_all(int fd, const uint8_t *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Moves what is in memory to a new file. */
static int smtp_spool_to_disk(smtp_spool *s, const char **error_r)
{
	const char *tmpdir = getenv("TMPDIR");
	const char *dirs[] = { s->dir, tmpdir, "/tmp" };
	int fd = -1;
	int err = ENOENT;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && fd < 0; i++) {
		if (dirs[i] == NULL || dirs[i][0] == '\0')
			continue;
		fd = smtp_spool_open_in(dirs[i]);
		if (fd < 0)
			err = errno;
	}
	if (fd < 0) {
		snprintf(s->error, sizeof(s->error), "cannot create spool file: %s",
			 strerror(err));
		*error_r = s->error;
		return -1;
	}
	if (smtp_write_all(fd, s->mem, s->mem_len) < 0) {
		snprintf(s->error, sizeof(s->error), "writing spool file: %s",
			 strerror(errno));
		close(fd);
		*error_r = s->error;
		return -1;
	}
	s->fd = fd;
	s->mem_len = 0;
	return 0;
}

int smtp_spool_write(smtp_spool *s, const void *data, size_t len,
		     const char **error_r)
{
	if (len == 0)
		return 0;
	if (s->fd < 0 && s->mem_len + len > s->memory_limit) {
		if (smtp_spool_to_disk(s, error_r) < 0)
			return -1;
	}
	if (s->fd >= 0) {
		if (smtp_write_all(s->fd, data, len) < 0) {
			snprintf(s->error, sizeof(s->error), "writing spool file: %s",
				 strerror(errno));
			*error_r = s->error;
			return -1;
		}
		s->size += len;
		return 0;
	}
	if (s->mem_len + len > s->mem_cap) {
		size_t cap = s->mem_cap == 0 ? 16 * 1024 : s->mem_cap;
		while (cap < s->mem_len + len)
			cap *= 2;
		uint8_t *mem = realloc(s->mem, cap);
		if (mem == NULL) {
			*error_r = "out of memory";
			return -1;
		}
		s->mem = mem;
		s->mem_cap = cap;
	}
	memcpy(s->mem + s->mem_len, data, len);
	s->mem_len += len;
	s->size += len;
	return 0;
}

uint64_t smtp_spool_size(const smtp_spool *s)
{
	return s->size;
}

bool smtp_spool_on_disk(const smtp_spool *s)
{
	return s->fd >= 0;
}

int smtp_spool_rewind(smtp_spool *s, const char **error_r)
{
	s->read_pos = 0;
	if (s->fd >= 0 && lseek(s->fd, 0, SEEK_SET) < 0) {
		snprintf(s->error, sizeof(s->error), "rewinding spool file: %s",
			 strerror(errno));
		*error_r = s->error;
		return -1;
	}
	return 0;
}

int smtp_spool_seek(smtp_spool *s, uint64_t offset, const char **error_r)
{
	if (offset > s->size)
		offset = s->size;
	s->read_pos = offset;
	if (s->fd >= 0 && lseek(s->fd, (off_t)offset, SEEK_SET) < 0) {
		snprintf(s->error, sizeof(s->error), "seeking in spool file: %s",
			 strerror(errno));
		*error_r = s->error;
		return -1;
	}
	return 0;
}

ssize_t smtp_spool_read(smtp_spool *s, void *buf, size_t size,
			const char **error_r)
{
	if (s->fd < 0) {
		size_t left = s->mem_len - (size_t)s->read_pos;
		size_t n = left < size ? left : size;
		if (n > 0)
			memcpy(buf, s->mem + s->read_pos, n);
		s->read_pos += n;
		return (ssize_t)n;
	}
	for (;;) {
		ssize_t n = read(s->fd, buf, size);
		if (n >= 0)
			return n;
		if (errno != EINTR) {
			snprintf(s->error, sizeof(s->error), "reading spool file: %s",
				 strerror(errno));
			*error_r = s->error;
			return -1;
		}
	}
}
