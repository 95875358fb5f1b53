/* log: one line per event, to stderr and optionally to a file, written
 * whole under a lock so lines of concurrent sessions never interleave. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static log_level log_min_level = LOG_LEVEL_INFO;
static FILE *log_file;
static char log_error_buf[512];

static const char *const log_level_names[] = {
	[LOG_LEVEL_DEBUG] = "debug",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_ERROR] = "error",
};

int log_level_parse(const char *name, log_level *level_r)
{
	for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
		if (strcmp(name, log_level_names[i]) == 0) {
			*level_r = (log_level)i;
			return 0;
		}
	}
	return -1;
}

int log_init(log_level min_level, const char *file_path, const char **error_r)
{
	log_min_level = min_level;
	if (file_path != NULL) {
		FILE *f = fopen(file_path, "a");
		if (f == NULL) {
			snprintf(log_error_buf, sizeof(log_error_buf),
				 "cannot open log file %s: %s", file_path,
				 strerror(errno));
			*error_r = log_error_buf;
			return -1;
		}
		setvbuf(f, NULL, _IOLBF, 0);
		pthread_mutex_lock(&log_lock);
		if (log_file != NULL)
			fclose(log_file);
		log_file = f;
		pthread_mutex_unlock(&log_lock);
	}
	return 0;
}

void log_close(void)
{
	pthread_mutex_lock(&log_lock);
	if (log_file != NULL)
		fclose(log_file);
	log_file = NULL;
	pthread_mutex_unlock(&log_lock);
}

bool log_enabled(log_level level)
{
	return level >= log_min_level;
}

void log_msg(log_level level, const char *session_id, const char *action,
	     const char *fmt, ...)
{
	if (level < log_min_level)
		return;

	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line),
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] %s: ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			 log_level_names[level],
			 session_id != NULL ? session_id : "main",
			 action != NULL ? action : "-");
	if (n < 0)
		return;
	size_t used = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	va_list args;
	va_start(args, fmt);
	int m = vsnprintf(line + used, sizeof(line) - used, fmt, args);
	va_end(args);
	if (m > 0)
		used += (size_t)m < sizeof(line) - used ? (size_t)m : sizeof(line) - used - 1;
	/* A line from the network may carry control bytes: never let them
	 * forge a second log line or drive the terminal. */
	for (size_t i = 0; i < used; i++) {
		unsigned char ch = (unsigned char)line[i];
		if (ch < 0x20 || ch == 0x7f)
			line[i] = '?';
	}
	if (used > sizeof(line) - 2)
		used = sizeof(line) - 2;
	line[used++] = '\n';
	line[used] = '\0';

	pthread_mutex_lock(&log_lock);
	fputs(line, stderr);
	if (log_file != NULL)
		fputs(line, log_file);
	pthread_mutex_unlock(&log_lock);
}
