/* libFuzzer target: APPEND commands through the IMAP framer into the APPEND
 * argument parser, whole and split at an input-chosen step; both must
 * agree on every event, and message bytes must add up to announced sizes. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap_append_parser.h"
#include "imap_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds data step bytes at a time; returns a hash of every event. */
static uint64_t run(const uint8_t *data, size_t size, size_t step)
{
	imap_framer f;
	imap_framer_init(&f, 2048, 65536);
	imap_append_parser p;
	imap_append_parser_init(&p, 4096, 16384, 8);
	uint64_t hash = 1469598103934665603ull;
	size_t offered = 0, consumed = 0;
	bool first = true, over = false;
	uint64_t announced = 0, seen = 0;
	while (!over) {
		imap_frame fr;
		const char *error;
		imap_parse_result ret = imap_framer_next(&f, data + consumed, offered - consumed, &fr,
							 &error);
		if (ret == IMAP_PARSE_ERROR)
			break;
		if (ret == IMAP_PARSE_MORE) {
			if (offered == size)
				break;
			offered = offered + step > size ? size : offered + step;
			continue;
		}
		size_t args_pos = 0;
		if (first) {
			imap_command cmd;
			if (imap_parser_command(fr.data, fr.len, &cmd, &error) < 0 ||
			    strcmp(cmd.name, "APPEND") != 0)
				break;
			args_pos = cmd.args_pos;
			first = false;
		}
		imap_append_event ev;
		imap_append_error kind;
		if (imap_append_parser_feed(&p, &fr, args_pos, &ev, &kind, &error) < 0) {
			if (kind == IMAP_APPEND_ERROR_NONE || error == NULL)
				abort();
			hash = (hash ^ (uint64_t)kind) * 1099511628211ull;
			break;
		}
		switch (ev.type) {
		case IMAP_APPEND_EV_LITERAL:
			if (ev.message) {
				if (ev.size > 4096 || ev.args_len > IMAP_APPEND_ARGS_MAX)
					abort();
				announced += ev.size;
				for (size_t i = 0; i < ev.args_len; i++)
					hash = (hash ^ ev.args[i]) * 1099511628211ull;
			}
			hash = (hash ^ ev.size) * 1099511628211ull;
			break;
		case IMAP_APPEND_EV_DATA:
			seen += ev.len;
			if (seen > announced)
				abort();
			if (ev.end && seen != announced)
				abort();
			break;
		case IMAP_APPEND_EV_DONE:
			over = true;
			break;
		case IMAP_APPEND_EV_NONE:
			break;
		}
		/* Chunks of literals differ with the split: not hashed. */
		if (ev.type == IMAP_APPEND_EV_LITERAL || ev.type == IMAP_APPEND_EV_DONE ||
		    (ev.type == IMAP_APPEND_EV_DATA && ev.end))
			hash = (hash ^ (uint64_t)ev.type ^ seen) * 1099511628211ull;
		if (p.mailbox_len > sizeof(p.mailbox) || p.total > 16384)
			abort();
		consumed += fr.len;
	}
	for (size_t i = 0; i < p.mailbox_len; i++)
		hash = (hash ^ p.mailbox[i]) * 1099511628211ull;
	return hash;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = (size_t)(data[0] % 16) + 1;
	data++;
	size--;
	if (run(data, size, size == 0 ? 1 : size) != run(data, size, step))
		abort();
	return 0;
}
