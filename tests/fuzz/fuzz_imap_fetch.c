/* libFuzzer target for imap_fetch: the FETCH item list parser and every item computed
 * from a message. Input: an item line, a NUL byte, then the message; without a NUL the
 * whole input is the message and a fixed list of every item is used. Every item must
 * render (BINARY may refuse an unknown encoding), nothing may crash or leak. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "imap_fetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static const char every_item[] =
	"(UID FLAGS ENVELOPE BODYSTRUCTURE BODY RFC822.SIZE RFC822.HEADER RFC822.TEXT RFC822 "
	"BODY.PEEK[] BODY[HEADER] BODY[TEXT] BODY[1] BODY[1.MIME] BODY[2.HEADER] BODY[2.TEXT] "
	"BODY[1.1] BODY[2.1.MIME] BODY[1.2.3] BODY[HEADER.FIELDS (FROM SUBJECT)] "
	"BODY[HEADER.FIELDS.NOT (FROM)] BODY[2.HEADER.FIELDS (TO)] BODY[]<5.10> BODY[1]<0.1> "
	"BINARY[] BINARY[1] BINARY[2] BINARY[1.1] BINARY.SIZE[] BINARY.SIZE[1] BINARY[TEXT] "
	"BINARY[1]<2.3> BINARY[2.MIME])";

static void render_all(imap_fetch_msg *m, const imap_fetch_atts *atts)
{
	for (size_t i = 0; i < atts->n_atts; i++) {
		const imap_fetch_att *att = &atts->atts[i];
		GByteArray *out = g_byte_array_new();
		bool unknown = false;
		const char *error = NULL;
		int ret = imap_fetch_msg_item(m, att, out, &unknown, &error);
		if (!imap_fetch_att_from_content(att)) {
			CHECK(ret == -1 && !unknown && out->len == 0);
		} else if (ret < 0) {
			CHECK(unknown && error != NULL && out->len == 0 &&
			      (att->type == IMAP_FETCH_BINARY_SECTION ||
			       att->type == IMAP_FETCH_BINARY_SIZE));
		} else {
			CHECK(out->len > 0);
		}
		if (ret == 0 && att->type == IMAP_FETCH_RFC822_SIZE) {
			char want[48];
			snprintf(want, sizeof(want), "RFC822.SIZE %" G_GUINT64_FORMAT,
				 (guint64)imap_fetch_msg_size(m));
			CHECK(out->len == strlen(want) && memcmp(out->data, want, out->len) == 0);
		}
		if (ret == 0 && att->type == IMAP_FETCH_RFC822 && !att->partial) {
			char want[48];
			snprintf(want, sizeof(want), "RFC822 {%" G_GUINT64_FORMAT "}\r\n",
				 (guint64)imap_fetch_msg_size(m));
			CHECK(out->len == strlen(want) + imap_fetch_msg_size(m));
		}
		g_byte_array_unref(out);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	const uint8_t *line = (const uint8_t *)every_item, *msg = data;
	size_t line_len = sizeof(every_item) - 1, msg_len = size;
	if (nul != NULL) {
		line = data;
		line_len = (size_t)(nul - data);
		msg = nul + 1;
		msg_len = size - line_len - 1;
	}
	imap_fetch_atts atts;
	const char *error = NULL;
	bool parsed = imap_fetch_atts_parse(line, line_len, &atts, &error) == 0;
	if (!parsed) {
		CHECK(error != NULL && strchr(error, '\n') == NULL);
		CHECK(atts.atts == NULL && atts.n_atts == 0);
	} else {
		CHECK(atts.n_atts > 0);
		for (size_t i = 0; i < atts.n_atts; i++) {
			const imap_fetch_att *a = &atts.atts[i];
			CHECK(a->text_len > 0);
			CHECK((a->text >= line && a->text + a->text_len <= line + line_len) ||
			      a->text[a->text_len] == '\0');
			CHECK(a->n_part <= IMAP_FETCH_MAX_PART_DEPTH);
			CHECK(a->n_fields <= IMAP_FETCH_MAX_FIELDS);
			for (size_t j = 0; j < a->n_part; j++)
				CHECK(a->part[j] != 0);
			CHECK(!a->partial || a->partial_len <= UINT64_MAX - a->partial_start);
		}
	}

	GBytes *bytes = g_bytes_new(msg, msg_len);
	imap_fetch_msg *m = imap_fetch_msg_new(bytes, &error);
	g_bytes_unref(bytes);
	if (m == NULL) {
		CHECK(error != NULL);
	} else {
		CHECK(imap_fetch_msg_size(m) >= msg_len);
		if (parsed)
			render_all(m, &atts);
		imap_fetch_msg_free(&m);
		CHECK(m == NULL);
	}
	if (parsed)
		imap_fetch_atts_clear(&atts);
	return 0;
}
