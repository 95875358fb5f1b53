/* api_token: creating and reading STATE_DIR/api-token. The token never goes
 * to a log; `sealpost pair` is the one place that prints it. */
#include "api_token.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static _Thread_local char api_token_error[512];

G_GNUC_PRINTF(2, 3)
static int api_token_fail(const char **error_r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(api_token_error, sizeof(api_token_error), fmt, ap);
	va_end(ap);
	*error_r = api_token_error;
	return -1;
}

char *api_token_path(const char *state_dir)
{
	return g_build_filename(state_dir, "api-token", NULL);
}

static int api_token_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A new token in a temporary file, linked to path unless path exists by
 * then (another process was first: its token stands). */
static int api_token_create(const char *path, const char **error_r)
{
	unsigned char raw[API_CHECK_TOKEN_BYTES];
	char hex[API_CHECK_TOKEN_LEN + 2];
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(hex, sizeof(hex), raw, sizeof(raw));
	sodium_memzero(raw, sizeof(raw));
	hex[API_CHECK_TOKEN_LEN] = '\n';
	hex[API_CHECK_TOKEN_LEN + 1] = '\0';

	char *tmp = g_strdup_printf("%s.XXXXXX", path);
	/* mkstemp creates it 0600 whatever the umask. */
	int fd = mkstemp(tmp);
	int ret = 0;
	if (fd < 0) {
		ret = api_token_fail(error_r, "cannot create %s: %s", tmp, strerror(errno));
	} else {
		if (fchmod(fd, 0600) < 0 || api_token_write_all(fd, hex, API_CHECK_TOKEN_LEN + 1) < 0 ||
		    fsync(fd) < 0)
			ret = api_token_fail(error_r, "cannot write %s: %s", tmp, strerror(errno));
		if (close(fd) < 0 && ret == 0)
			ret = api_token_fail(error_r, "cannot write %s: %s", tmp, strerror(errno));
		if (ret == 0 && link(tmp, path) < 0 && errno != EEXIST)
			ret = api_token_fail(error_r, "cannot create %s: %s", path, strerror(errno));
		unlink(tmp);
	}
	sodium_memzero(hex, sizeof(hex));
	g_free(tmp);
	return ret;
}

int api_token_load(const char *state_dir, bool create, char *token_r, const char **error_r)
{
	char *path = api_token_path(state_dir);
	int ret = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0 && errno == ENOENT && create) {
		if (api_token_create(path, error_r) < 0)
			goto out;
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	}
	if (fd < 0) {
		api_token_fail(error_r, "cannot open %s: %s", path, strerror(errno));
		goto out;
	}
	struct stat st;
	char buf[API_CHECK_TOKEN_LEN + 8];
	ssize_t n = 0;
	if (fstat(fd, &st) < 0) {
		api_token_fail(error_r, "cannot read %s: %s", path, strerror(errno));
	} else if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		api_token_fail(error_r, "%s is not a regular file of this user", path);
	} else if ((st.st_mode & 077) != 0) {
		api_token_fail(error_r, "%s is accessible to others (mode %04o); make it 0600 "
			       "(chmod 600) or remove it for a new token", path,
			       (unsigned)(st.st_mode & 07777));
	} else {
		do
			n = read(fd, buf, sizeof(buf));
		while (n < 0 && errno == EINTR);
		if (n < 0)
			api_token_fail(error_r, "cannot read %s: %s", path, strerror(errno));
		else
			ret = 0;
	}
	close(fd);
	if (ret < 0)
		goto out;
	size_t len = (size_t)n;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	bool ok = len == API_CHECK_TOKEN_LEN;
	for (size_t i = 0; ok && i < len; i++)
		ok = g_ascii_isxdigit(buf[i]);
	if (!ok) {
		ret = api_token_fail(error_r, "%s does not hold a token (64 hex digits); remove it "
				     "for a new one", path);
	} else {
		for (size_t i = 0; i < len; i++)
			token_r[i] = g_ascii_tolower(buf[i]);
		token_r[len] = '\0';
	}
	sodium_memzero(buf, sizeof(buf));
out:
	g_free(path);
	return ret;
}
