/* log: one line per event on stderr (and optionally a file), each naming the
 * session and what it was doing. Secrets are never passed here in clear. */
#ifndef SEALPOST_LOG_H
#define SEALPOST_LOG_H

#include <stdbool.h>

typedef enum {
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
} log_level;

/* Placeholder written instead of any password or AUTH payload. */
#define LOG_SECRET "********"

/* file_path may be NULL (stderr only). Returns 0, or -1 with *error_r. */
int log_init(log_level min_level, const char *file_path, const char **error_r);
void log_close(void);
int log_level_parse(const char *name, log_level *level_r);
bool log_enabled(log_level level);

/* session_id may be NULL for process-wide events ("main"); action says what
 * the session was doing, e.g. "sending LOGIN to upstream". */
void log_msg(log_level level, const char *session_id, const char *action,
	     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define log_debug(sid, action, ...) \
	do { if (log_enabled(LOG_LEVEL_DEBUG)) \
		log_msg(LOG_LEVEL_DEBUG, sid, action, __VA_ARGS__); } while (0)
#define log_info(sid, action, ...) log_msg(LOG_LEVEL_INFO, sid, action, __VA_ARGS__)
#define log_warn(sid, action, ...) log_msg(LOG_LEVEL_WARN, sid, action, __VA_ARGS__)
#define log_error(sid, action, ...) log_msg(LOG_LEVEL_ERROR, sid, action, __VA_ARGS__)

#endif
