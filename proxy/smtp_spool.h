/* smtp_spool: where one message waits between the client's final dot and
 * the provider: memory up to a threshold, then an unlinked 0600 file. */
#ifndef SEALPOST_SMTP_SPOOL_H
#define SEALPOST_SMTP_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct smtp_spool smtp_spool;

/* dir: where a file goes once memory_limit is passed (NULL or unusable:
 * $TMPDIR, then /tmp). Nothing is created until needed. */
smtp_spool *smtp_spool_new(const char *dir, size_t memory_limit);
void smtp_spool_free(smtp_spool **s);

/* Empties the spool for the next message (the file, if any, is closed and
 * with it gone). */
void smtp_spool_clear(smtp_spool *s);

int smtp_spool_write(smtp_spool *s, const void *data, size_t len,
		     const char **error_r);
uint64_t smtp_spool_size(const smtp_spool *s);
bool smtp_spool_on_disk(const smtp_spool *s);

/* Reading back from the start: rewind once, then read until 0. */
int smtp_spool_rewind(smtp_spool *s, const char **error_r);
/* Reading from offset on (past the end: at the end). */
int smtp_spool_seek(smtp_spool *s, uint64_t offset, const char **error_r);
/* Returns bytes read, 0 at the end, -1 with *error_r. */
ssize_t smtp_spool_read(smtp_spool *s, void *buf, size_t size,
			const char **error_r);

#endif
