/* Unit tests of imap_fetch: the FETCH item list parser (every form, every error, odd
 * spacing and case) and the items computed from a message's bytes (sections, partials,
 * BODYSTRUCTURE, ENVELOPE, BINARY, limits).
 *
 * The input of the item parser is a complete line, so the byte-by-byte feeding the other
 * parsers' tests do does not apply here.
 *
 * The messages below and every expected answer in dovecot_cases were checked against the
 * real Dovecot 2.3.19.1 (tests/provider): each message was APPENDed and the same FETCH
 * sent, and the expected bytes are its answers (FLAGS dropped). Where sealpost answers
 * differently on purpose, the test says so: literal8 (~{n}) only for bytes that hold a
 * NUL (Dovecot sends it for anything decoded); BINARY.SIZE of a multipart is the size of
 * what BINARY returns; part number 0 is refused; a trimmed ENVELOPE string is quoted;
 * nested multiparts with one and the same boundary, and HEADER.FIELDS of a header cut
 * by a boundary, are not followed into Dovecot's answers (which read past the part). */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>

#include "imap_fetch.h"

/* ---- the item list ----------------------------------------------------------------- */

static const char *const type_names[] = {
	[IMAP_FETCH_UID] = "UID",
	[IMAP_FETCH_FLAGS] = "FLAGS",
	[IMAP_FETCH_INTERNALDATE] = "INTERNALDATE",
	[IMAP_FETCH_MODSEQ] = "MODSEQ",
	[IMAP_FETCH_OTHER] = "OTHER",
	[IMAP_FETCH_ENVELOPE] = "ENVELOPE",
	[IMAP_FETCH_BODYSTRUCTURE] = "BODYSTRUCTURE",
	[IMAP_FETCH_BODY] = "BODY",
	[IMAP_FETCH_RFC822] = "RFC822",
	[IMAP_FETCH_RFC822_HEADER] = "RFC822.HEADER",
	[IMAP_FETCH_RFC822_TEXT] = "RFC822.TEXT",
	[IMAP_FETCH_RFC822_SIZE] = "RFC822.SIZE",
	[IMAP_FETCH_BODY_SECTION] = "SECTION",
	[IMAP_FETCH_BINARY_SECTION] = "BINARY",
	[IMAP_FETCH_BINARY_SIZE] = "BINARY.SIZE",
};

static const char *const spec_names[] = {
	[IMAP_FETCH_SPEC_NONE] = "",
	[IMAP_FETCH_SPEC_HEADER] = "HEADER",
	[IMAP_FETCH_SPEC_HEADER_FIELDS] = "FIELDS",
	[IMAP_FETCH_SPEC_HEADER_FIELDS_NOT] = "FIELDS.NOT",
	[IMAP_FETCH_SPEC_TEXT] = "TEXT",
	[IMAP_FETCH_SPEC_MIME] = "MIME",
};

/* One line per item: type, peek, section, partial and the item's text. */
static char *describe(const imap_fetch_atts *atts)
{
	GString *s = g_string_new(NULL);
	for (size_t i = 0; i < atts->n_atts; i++) {
		const imap_fetch_att *a = &atts->atts[i];
		g_string_append_printf(s, "%s%s", type_names[a->type], a->peek ? " peek" : "");
		if (a->type == IMAP_FETCH_BODY_SECTION || a->type == IMAP_FETCH_BINARY_SECTION ||
		    a->type == IMAP_FETCH_BINARY_SIZE) {
			g_string_append(s, " [");
			for (size_t j = 0; j < a->n_part; j++)
				g_string_append_printf(s, "%s%u", j > 0 ? "." : "", a->part[j]);
			g_string_append_printf(s, "|%s", spec_names[a->spec]);
			for (size_t j = 0; j < a->n_fields; j++)
				g_string_append_printf(s, "%s%s", j > 0 ? "," : ":", a->fields[j]);
			g_string_append(s, "]");
			if (a->partial)
				g_string_append_printf(s, "<%" PRIu64 ".%" PRIu64 ">",
						       a->partial_start, a->partial_len);
			g_string_append_printf(s, " section=%.*s", (int)a->section_len,
					       (const char *)a->section);
		}
		g_string_append_printf(s, " text=%.*s\n", (int)a->text_len, (const char *)a->text);
	}
	return g_string_free(s, FALSE);
}

static void check_parse(const char *line, const char *expected)
{
	imap_fetch_atts atts;
	const char *error = NULL;
	int ret = imap_fetch_atts_parse((const uint8_t *)line, strlen(line), &atts, &error);
	if (ret < 0)
		fail_msg("%s: %s", line, error);
	char *got = describe(&atts);
	if (strcmp(got, expected) != 0)
		fail_msg("%s:\n got:\n%s\n expected:\n%s", line, got, expected);
	g_free(got);
	imap_fetch_atts_clear(&atts);
	assert_null(atts.atts);
	assert_int_equal(atts.n_atts, 0);
}

static void check_parse_error(const char *line, const char *error_part)
{
	imap_fetch_atts atts;
	const char *error = NULL;
	int ret = imap_fetch_atts_parse((const uint8_t *)line, strlen(line), &atts, &error);
	if (ret == 0) {
		char *got = describe(&atts);
		fail_msg("%s: parsed as\n%s", line, got);
	}
	assert_non_null(error);
	assert_null(strchr(error, '\n'));
	if (strstr(error, error_part) == NULL)
		fail_msg("%s: error '%s' lacks '%s'", line, error, error_part);
	assert_null(atts.atts);
}

static void test_parse_simple_items(void **state)
{
	(void)state;
	check_parse("UID", "UID text=UID\n");
	check_parse("uid\r\n", "UID text=uid\n");
	check_parse("  Flags  ", "FLAGS text=Flags\n");
	check_parse("(UID FLAGS INTERNALDATE MODSEQ ENVELOPE BODYSTRUCTURE BODY RFC822 "
		    "RFC822.HEADER RFC822.TEXT RFC822.SIZE)",
		    "UID text=UID\nFLAGS text=FLAGS\nINTERNALDATE text=INTERNALDATE\n"
		    "MODSEQ text=MODSEQ\nENVELOPE text=ENVELOPE\n"
		    "BODYSTRUCTURE text=BODYSTRUCTURE\nBODY text=BODY\nRFC822 text=RFC822\n"
		    "RFC822.HEADER peek text=RFC822.HEADER\nRFC822.TEXT text=RFC822.TEXT\n"
		    "RFC822.SIZE text=RFC822.SIZE\n");
	check_parse("( uid   rfc822.size )", "UID text=uid\nRFC822.SIZE text=rfc822.size\n");
	check_parse("(rfc822.size)", "RFC822.SIZE text=rfc822.size\n");
}

static void test_parse_macros(void **state)
{
	(void)state;
	check_parse("ALL", "FLAGS text=FLAGS\nINTERNALDATE text=INTERNALDATE\n"
		    "RFC822.SIZE text=RFC822.SIZE\nENVELOPE text=ENVELOPE\n");
	check_parse("fast", "FLAGS text=FLAGS\nINTERNALDATE text=INTERNALDATE\n"
		    "RFC822.SIZE text=RFC822.SIZE\n");
	check_parse("Full\r\n", "FLAGS text=FLAGS\nINTERNALDATE text=INTERNALDATE\n"
		    "RFC822.SIZE text=RFC822.SIZE\nENVELOPE text=ENVELOPE\nBODY text=BODY\n");
	check_parse("ALL (CHANGEDSINCE 12)", "FLAGS text=FLAGS\nINTERNALDATE text=INTERNALDATE\n"
		    "RFC822.SIZE text=RFC822.SIZE\nENVELOPE text=ENVELOPE\n");
	/* A macro is no item of a list (Dovecot: "Unknown parameter"). */
	check_parse_error("(ALL)", "invalid FETCH item");
	check_parse_error("(UID FAST)", "invalid FETCH item");
	check_parse("ALLX", "OTHER text=ALLX\n");
}

static void test_parse_other(void **state)
{
	(void)state;
	check_parse("X-GM-MSGID", "OTHER text=X-GM-MSGID\n");
	check_parse("(UID EMAILID THREADID SAVEDATE x-gm-labels)",
		    "UID text=UID\nOTHER text=EMAILID\nOTHER text=THREADID\n"
		    "OTHER text=SAVEDATE\nOTHER text=x-gm-labels\n");
	/* An extension's own argument list stays with it inside a list. */
	check_parse("(UID PREVIEW (LAZY) FLAGS)",
		    "UID text=UID\nOTHER text=PREVIEW (LAZY)\nFLAGS text=FLAGS\n");
	/* At the top level a list after the item is the fetch modifiers. */
	check_parse("PREVIEW (LAZY)", "OTHER text=PREVIEW\n");
	check_parse_error("FOO[1]", "unknown FETCH item with a section");
	check_parse_error("BINARY.FOO", "invalid FETCH item");
	check_parse_error("1:*", "invalid FETCH item");
	check_parse_error("BODY.PEEK", "invalid FETCH item");
	check_parse_error("BINARY", "invalid FETCH item");
	check_parse_error("BINARY.SIZE", "invalid FETCH item");
}

static void test_parse_sections(void **state)
{
	(void)state;
	check_parse("BODY[]", "SECTION [|] section= text=BODY[]\n");
	check_parse("body.peek[]", "SECTION peek [|] section= text=body.peek[]\n");
	check_parse("BODY[1.2.3]", "SECTION [1.2.3|] section=1.2.3 text=BODY[1.2.3]\n");
	check_parse("BODY.PEEK[HEADER]", "SECTION peek [|HEADER] section=HEADER "
		    "text=BODY.PEEK[HEADER]\n");
	check_parse("BODY[text]", "SECTION [|TEXT] section=text text=BODY[text]\n");
	check_parse("BODY[2.MIME]", "SECTION [2|MIME] section=2.MIME text=BODY[2.MIME]\n");
	check_parse("BODY[4.2.header]", "SECTION [4.2|HEADER] section=4.2.header "
		    "text=BODY[4.2.header]\n");
	check_parse("BODY[1.TEXT]", "SECTION [1|TEXT] section=1.TEXT text=BODY[1.TEXT]\n");
	check_parse("BODY[HEADER.FIELDS (Subject FROM)]",
		    "SECTION [|FIELDS:Subject,FROM] section=HEADER.FIELDS (Subject FROM) "
		    "text=BODY[HEADER.FIELDS (Subject FROM)]\n");
	check_parse("BODY.PEEK[1.HEADER.FIELDS.NOT (X-A)]",
		    "SECTION peek [1|FIELDS.NOT:X-A] section=1.HEADER.FIELDS.NOT (X-A) "
		    "text=BODY.PEEK[1.HEADER.FIELDS.NOT (X-A)]\n");
	/* Field names as quoted strings and literals; odd spacing in the list. */
	check_parse("BODY[HEADER.FIELDS (\"Sub ject\"  {4}\r\nFrom   \"\\\"q\" )]",
		    "SECTION [|FIELDS:Sub ject,From,\"q] section=HEADER.FIELDS (\"Sub ject\"  "
		    "{4}\r\nFrom   \"\\\"q\" ) text=BODY[HEADER.FIELDS (\"Sub ject\"  {4}\r\n"
		    "From   \"\\\"q\" )]\n");
	check_parse("BODY[HEADER.FIELDS  (A)]", "SECTION [|FIELDS:A] section=HEADER.FIELDS  (A) "
		    "text=BODY[HEADER.FIELDS  (A)]\n");
	/* Leading zeros are taken, as Dovecot takes them. */
	check_parse("BODY[01.002]", "SECTION [1.2|] section=01.002 text=BODY[01.002]\n");
	check_parse("BODY[4294967295]", "SECTION [4294967295|] section=4294967295 "
		    "text=BODY[4294967295]\n");
	check_parse("BINARY[1.2]", "BINARY [1.2|] section=1.2 text=BINARY[1.2]\n");
	check_parse("binary.peek[]", "BINARY peek [|] section= text=binary.peek[]\n");
	check_parse("BINARY.SIZE[3]", "BINARY.SIZE [3|] section=3 text=BINARY.SIZE[3]\n");
	/* Dovecot takes any section for BINARY, and a partial on BINARY.SIZE (ignored). */
	check_parse("BINARY.PEEK[1.MIME]", "BINARY peek [1|MIME] section=1.MIME "
		    "text=BINARY.PEEK[1.MIME]\n");
	check_parse("BINARY.SIZE[1]<0.1>", "BINARY.SIZE [1|] section=1 text=BINARY.SIZE[1]<0.1>\n");
	char many[IMAP_FETCH_MAX_PART_DEPTH * 2 + 16] = "BODY[";
	for (int i = 0; i < IMAP_FETCH_MAX_PART_DEPTH; i++)
		strcat(many, i > 0 ? ".1" : "1");
	strcat(many, "]");
	imap_fetch_atts atts;
	const char *error;
	assert_int_equal(imap_fetch_atts_parse((const uint8_t *)many, strlen(many), &atts,
					       &error), 0);
	assert_int_equal(atts.atts[0].n_part, IMAP_FETCH_MAX_PART_DEPTH);
	imap_fetch_atts_clear(&atts);
	strcpy(many + strlen(many) - 1, ".1]");
	check_parse_error(many, "too many part numbers");
}

static void test_parse_section_errors(void **state)
{
	(void)state;
	check_parse_error("BODY[0]", "invalid part number");
	check_parse_error("BODY[1.0]", "invalid part number");
	check_parse_error("BODY[4294967296]", "invalid part number");
	check_parse_error("BODY[1.]", "invalid section");
	check_parse_error("BODY[1.2HEADER]", "invalid section");
	check_parse_error("BODY[1MIME]", "invalid section");
	check_parse_error("BODY[HEADERX]", "invalid section");
	check_parse_error("BODY[1.2.]", "invalid section");
	check_parse_error("BODY[1..2]", "invalid section");
	check_parse_error("BODY[.1]", "invalid section");
	check_parse_error("BODY[MIME]", "invalid section");
	check_parse_error("BODY[HEADERS]", "invalid section");
	check_parse_error("BODY[TEXT.1]", "invalid section");
	check_parse_error("BODY[1 ]", "invalid section");
	check_parse_error("BODY[ 1]", "invalid section");
	check_parse_error("BODY[HEADER.FIELDS]", "without a field list");
	check_parse_error("BODY[HEADER.FIELDS(A)]", "without a field list");
	check_parse_error("BODY[HEADER.FIELDS A]", "without a field list");
	check_parse_error("BODY[HEADER.FIELDS ()]", "empty header field list");
	check_parse_error("BODY[HEADER.FIELDS (A (B))]", "invalid header field list");
	check_parse_error("BODY[HEADER.FIELDS (A]", "");
	check_parse_error("BODY[HEADER.FIELDS (A) ]", "invalid section");
	check_parse_error("BODY[HEADER.FIELDS (\"\")]", "invalid header field name");
	check_parse_error("BODY[HEADER.FIELDS ({5}\r\nAB)]", "");
	check_parse_error("BODY[", "invalid section");
	check_parse_error("BODY[1", "invalid section");
	check_parse_error("BODY[]x", "junk after FETCH item");
	check_parse_error("BODY[HEADER.FIELDS (a)]x", "junk after FETCH item");
	check_parse_error("UID]", "invalid FETCH item");
	check_parse_error("BODY<1.2>", "invalid FETCH item");

	GString *fields = g_string_new("BODY[HEADER.FIELDS (");
	for (int i = 0; i <= IMAP_FETCH_MAX_FIELDS; i++)
		g_string_append_printf(fields, "%sF%d", i > 0 ? " " : "", i);
	g_string_append(fields, ")]");
	check_parse_error(fields->str, "too many header fields");
	g_string_free(fields, TRUE);
}

static void test_parse_partial(void **state)
{
	(void)state;
	check_parse("BODY[]<0.10>", "SECTION [|]<0.10> section= text=BODY[]<0.10>\n");
	check_parse("BODY.PEEK[1.MIME]<5.0>", "SECTION peek [1|MIME]<5.0> section=1.MIME "
		    "text=BODY.PEEK[1.MIME]<5.0>\n");
	check_parse("BINARY[1]<18446744073709551614.1>",
		    "BINARY [1|]<18446744073709551614.1> section=1 "
		    "text=BINARY[1]<18446744073709551614.1>\n");
	/* "<start>" alone runs to the end, as Dovecot takes it. */
	check_parse("BODY[]<7>", "SECTION [|]<7.18446744073709551608> section= text=BODY[]<7>\n");
	check_parse_error("BODY[]<18446744073709551615.1>", "partial out of range");
	check_parse_error("BODY[]<18446744073709551616.1>", "invalid partial");
	check_parse_error("BODY[]<1.18446744073709551616>", "invalid partial");
	check_parse_error("BODY[]<>", "invalid partial");
	check_parse_error("BODY[]<1.>", "invalid partial");
	check_parse_error("BODY[]<.1>", "invalid partial");
	check_parse_error("BODY[]<1.2", "invalid partial");
	check_parse_error("BODY[]<1,2>", "invalid partial");
	check_parse_error("BODY[]<-1.2>", "invalid partial");
}

static void test_parse_lists_and_modifiers(void **state)
{
	(void)state;
	check_parse("(UID BODY.PEEK[1]<0.5> BODY[HEADER.FIELDS (A B)] FLAGS)",
		    "UID text=UID\nSECTION peek [1|]<0.5> section=1 text=BODY.PEEK[1]<0.5>\n"
		    "SECTION [|FIELDS:A,B] section=HEADER.FIELDS (A B) "
		    "text=BODY[HEADER.FIELDS (A B)]\nFLAGS text=FLAGS\n");
	check_parse("(UID  BODY.PEEK[1] )", "UID text=UID\nSECTION peek [1|] section=1 "
		    "text=BODY.PEEK[1]\n");
	check_parse("(FLAGS) (CHANGEDSINCE 12345)", "FLAGS text=FLAGS\n");
	check_parse("(FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n", "FLAGS text=FLAGS\n");
	check_parse("UID (CHANGEDSINCE 1 (X \"y\" {1}\r\nz))", "UID text=UID\n");
	check_parse("(FLAGS)   ", "FLAGS text=FLAGS\n");
	check_parse_error("", "missing FETCH items");
	check_parse_error("   \r\n", "missing FETCH items");
	check_parse_error("()", "empty FETCH item list");
	check_parse_error("(UID", "unterminated FETCH item list");
	check_parse_error("(UID FLAGS", "unterminated FETCH item list");
	check_parse_error("(UID)FLAGS", "junk after FETCH items");
	check_parse_error("UID FLAGS", "junk after FETCH items");
	check_parse_error("BODY[1] UID", "junk after FETCH items");
	check_parse_error("(UID) (CHANGEDSINCE 1", "unterminated FETCH modifiers");
	check_parse_error("(UID) (CHANGEDSINCE 1) X", "junk after FETCH modifiers");
	check_parse_error("(UID) (CHANGEDSINCE {5}\r\n", "literal data missing");
	check_parse_error("(UID)(FLAGS)", "junk after FETCH items");
	check_parse_error("(UID\"x\")", "missing space between FETCH items");
	check_parse_error("((UID))", "invalid FETCH item");
	check_parse_error("(UID) (((((((((((((X)))))))))))))", "nested too deeply");
	check_parse_error("(UID BODY[1]FLAGS)", "junk after FETCH item");
}

static void test_att_predicates(void **state)
{
	(void)state;
	static const struct {
		const char *item;
		bool content, seen;
	} cases[] = {
		{ "UID", false, false }, { "FLAGS", false, false },
		{ "INTERNALDATE", false, false }, { "MODSEQ", false, false },
		{ "X-GM-MSGID", false, false }, { "ENVELOPE", true, false },
		{ "BODYSTRUCTURE", true, false }, { "BODY", true, false },
		{ "RFC822", true, true }, { "RFC822.HEADER", true, false },
		{ "RFC822.TEXT", true, true }, { "RFC822.SIZE", true, false },
		{ "BODY[]", true, true }, { "BODY.PEEK[]", true, false },
		{ "BODY[1.MIME]", true, true }, { "BINARY[1]", true, true },
		{ "BINARY.PEEK[1]", true, false }, { "BINARY.SIZE[1]", true, false },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		imap_fetch_atts atts;
		const char *error;
		assert_int_equal(imap_fetch_atts_parse((const uint8_t *)cases[i].item,
						       strlen(cases[i].item), &atts, &error), 0);
		assert_int_equal(atts.n_atts, 1);
		if (imap_fetch_att_from_content(&atts.atts[0]) != cases[i].content ||
		    imap_fetch_att_sets_seen(&atts.atts[0]) != cases[i].seen)
			fail_msg("%s", cases[i].item);
		imap_fetch_atts_clear(&atts);
	}
}

/* ---- messages ---------------------------------------------------------------------- */

typedef struct {
	const char *name;
	const char *data;
	size_t len;
} fixture;

/* RFC 3501 6.4.5's example message; multipart/mixed with a QP text and a base64
 * attachment with every content field; multipart/alternative inside mixed; a
 * message/rfc822 attachment holding a multipart; no header at all; no From; 8-bit body
 * and RFC 2047 words; base64, QP and an unknown encoding; no trailing CRLF; LF-only line
 * ends; groups and defaults of Sender/Reply-To; folded RFC 2047 subject and RFC 2231
 * continuations; a header without an empty line; multipart/digest; a multipart without
 * boundaries; a message/rfc822 top level; parameter and type case; the charset
 * defaults; odd addresses; repeated fields; odd MIME (multipart without boundary,
 * base64 message/rfc822, empty and cut parts, empty type and disposition). */
static const fixture fixtures[] = {
	{ "simple",
		"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
		"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
		"Subject: afternoon meeting\r\n"
		"To: mooch@owatagu.siam.edu.example\r\n"
		"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
		"\r\n"
		"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n",
		326 },
	{ "mixed",
		"From: \"Alice A.\" <alice@example.test>\r\n"
		"To: bob@example.test, \"Carol, C\" <carol@example.test>\r\n"
		"Cc: dave@example.test\r\n"
		"Subject: with attachment\r\n"
		"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
		"Message-ID: <mixed@example.test>\r\n"
		"In-Reply-To: <prev@example.test>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
		"\r\n"
		"preamble text\r\n"
		"--XYZ\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n"
		"\r\n"
		"caf=C3=A9 =3D ok=\r\n"
		" soft\r\n"
		"--XYZ\r\n"
		"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
		"Content-ID: <att1@example.test>\r\n"
		"Content-Description: some bytes\r\n"
		"Content-Language: en, de\r\n"
		"Content-Location: http://example.test/a.bin\r\n"
		"\r\n"
		"AAECAwQFBgcICQ==\r\n"
		"--XYZ--\r\n"
		"epilogue\r\n",
		776 },
	{ "nested",
		"From: alice@example.test\r\n"
		"To: bob@example.test\r\n"
		"Subject: nested\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=outer\r\n"
		"\r\n"
		"--outer\r\n"
		"Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
		"\r\n"
		"--inner\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"plain body\r\n"
		"--inner\r\n"
		"Content-Type: text/html; charset=\"utf-8\"\r\n"
		"\r\n"
		"<p>html body</p>\r\n"
		"--inner--\r\n"
		"\r\n"
		"--outer\r\n"
		"Content-Type: image/png\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"Content-Disposition: inline\r\n"
		"\r\n"
		"iVBORw0KGgo=\r\n"
		"--outer--\r\n",
		457 },
	{ "rfc822",
		"From: alice@example.test\r\n"
		"To: bob@example.test\r\n"
		"Subject: fwd\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
		"\r\n"
		"--b1\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"see attached\r\n"
		"--b1\r\n"
		"Content-Type: message/rfc822\r\n"
		"\r\n"
		"From: carol@example.test\r\n"
		"To: alice@example.test\r\n"
		"Subject: inner message\r\n"
		"Date: Mon, 30 Nov 2026 09:00:00 +0100\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
		"\r\n"
		"--b2\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"inner plain\r\n"
		"--b2\r\n"
		"Content-Type: text/html\r\n"
		"\r\n"
		"<b>inner</b>\r\n"
		"--b2--\r\n"
		"--b1--\r\n",
		511 },
	{ "noheaders",
		"\r\n"
		"just a body\r\n"
		"two lines\r\n",
		26 },
	{ "missing",
		"Subject: only a subject\r\n"
		"X-Other: 1\r\n"
		"\r\n"
		"body without from\r\n",
		58 },
	{ "eightbit",
		"From: =?UTF-8?Q?J=C3=B6rg?= <joerg@example.test>\r\n"
		"To: \"Bob \\\"the\\\" Builder\" <bob@example.test>\r\n"
		"Subject: =?ISO-8859-1?Q?caf=E9?= plans\r\n"
		"Content-Type: text/plain; charset=iso-8859-1\r\n"
		"Content-Transfer-Encoding: 8bit\r\n"
		"\r\n"
		"caf\351 au lait\r\n",
		231 },
	{ "qp_b64",
		"From: a@example.test\r\n"
		"Subject: encodings\r\n"
		"Content-Type: multipart/mixed; boundary=zz\r\n"
		"\r\n"
		"--zz\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"\r\n"
		"aGVsbG8gd29ybGQK\r\n"
		"--zz\r\n"
		"Content-Type: application/octet-stream\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"\r\n"
		"AAEAAg==\r\n"
		"--zz\r\n"
		"Content-Type: text/plain\r\n"
		"Content-Transfer-Encoding: Quoted-Printable\r\n"
		"\r\n"
		"a=3Db=\r\n"
		"c\r\n"
		"--zz\r\n"
		"Content-Type: text/plain\r\n"
		"Content-Transfer-Encoding: x-uuencode\r\n"
		"\r\n"
		"begin 644 x\r\n"
		"--zz--\r\n",
		467 },
	{ "notrail",
		"From: a@example.test\r\n"
		"Subject: no trailing crlf\r\n"
		"\r\n"
		"last line",
		60 },
	{ "lfonly",
		"From: a@example.test\n"
		"Subject: lf only\n"
		"Content-Type: multipart/mixed; boundary=q\n"
		"\n"
		"--q\n"
		"\n"
		"first\n"
		"--q\n"
		"Content-Type: text/plain\n"
		"\n"
		"second\n"
		"--q--\n",
		135 },
	{ "group",
		"From: Boss <boss@example.test>\r\n"
		"Sender: secretary@example.test\r\n"
		"Reply-To: replies@example.test\r\n"
		"To: A Group: ann@example.test, \"Bo B\" <bo@example.test>;, solo@example.test\r\n"
		"Cc: undisclosed-recipients:;\r\n"
		"Bcc: hidden@example.test (Hidden Person)\r\n"
		"Subject: group\r\n"
		"Message-ID: <grp@example.test>\r\n"
		"\r\n"
		"x\r\n",
		298 },
	{ "rfc2047",
		"From: =?utf-8?B?w4Rrc2Vs?= <a@example.test>\r\n"
		"Subject: =?utf-8?B?SGVsbG8g8J+Ygg==?=\r\n"
		" =?utf-8?Q?_folded?=\r\n"
		"Date: Wed, 2 Dec 2026 04:00:00 +0000\r\n"
		"Content-Type: text/plain; charset=\"utf-8\"; format=flowed\r\n"
		"Content-Disposition: inline; filename*0*=utf-8''%C3%A4; filename*1=\".txt\"\r\n"
		"\r\n"
		"body\r\n",
		285 },
	{ "headeronly",
		"From: a@example.test\r\n"
		"Subject: header only\r\n",
		44 },
	{ "digest",
		"From: list@example.test\r\n"
		"Subject: digest\r\n"
		"Content-Type: multipart/digest; boundary=d\r\n"
		"\r\n"
		"--d\r\n"
		"\r\n"
		"From: one@example.test\r\n"
		"Subject: one\r\n"
		"\r\n"
		"first\r\n"
		"--d\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"not a message\r\n"
		"--d--\r\n",
		197 },
	{ "emptymp",
		"From: a@example.test\r\n"
		"Content-Type: multipart/mixed; boundary=none\r\n"
		"\r\n"
		"no boundaries here\r\n",
		90 },
	{ "msgroot",
		"From: a@example.test\r\n"
		"Subject: outer\r\n"
		"Content-Type: message/rfc822\r\n"
		"\r\n"
		"From: b@example.test\r\n"
		"Subject: inner\r\n"
		"\r\n"
		"inner body\r\n",
		122 },
	{ "cases",
		"From: a@example.test\r\n"
		"Content-Type: Multipart/Mixed; BOUNDARY=\"Bb\"; X-Param=VaLuE\r\n"
		"\r\n"
		"--Bb\r\n"
		"Content-Type: Application/Octet-Stream; NAME=\"A.BIN\"; Charset=UTF-8\r\n"
		"Content-Transfer-Encoding: BASE64\r\n"
		"Content-Disposition: ATTACHMENT; FILENAME=\"A.BIN\"\r\n"
		"Content-Language: EN\r\n"
		"\r\n"
		"AAAA\r\n"
		"--Bb\r\n"
		"Content-Type: text/plain; charset=\"UTF-8\"; format=Flowed\r\n"
		"Content-Transfer-Encoding: 8Bit\r\n"
		"\r\n"
		"x\r\n"
		"--Bb--\r\n",
		386 },
	{ "cs",
		"From: a@example.test\r\n"
		"Content-Type: multipart/mixed; boundary=b\r\n"
		"\r\n"
		"--b\r\n"
		"Content-Type: text/plain; format=flowed\r\n"
		"\r\n"
		"x\r\n"
		"--b\r\n"
		"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; format=flowed\r\n"
		"\r\n"
		"x\r\n"
		"--b\r\n"
		"Content-Type: text/plain; charset=US-ASCII\r\n"
		"Content-Transfer-Encoding: 7BIT\r\n"
		"\r\n"
		"x\r\n"
		"--b\r\n"
		"Content-Type: text/html; charset=us-ascii\r\n"
		"Content-Transfer-Encoding: 8bit\r\n"
		"\r\n"
		"x\r\n"
		"--b\r\n"
		"Content-Type: text/plain; charset=US-ASCII\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"\r\n"
		"eAo=\r\n"
		"--b\r\n"
		"Content-Type: text/plain; charset=US-ASCII\r\n"
		"Content-ID: <x@y>\r\n"
		"\r\n"
		"x\r\n"
		"--b\r\n"
		"Content-Type: text\r\n"
		"\r\n"
		"x\r\n"
		"--b\r\n"
		"Content-Type: application/x-foo; charset=US-ASCII\r\n"
		"\r\n"
		"x\r\n"
		"--b--\r\n",
		623 },
	{ "addrs",
		"From: justlocal\r\n"
		"Sender:\r\n"
		"Reply-To: \"Quoted, Name\" <q@example.test>, <@route1,@route2:r@example.test>\r\n"
		"To: a@b.example (Comment Name), \"x y\"@example.test, Name With  Spaces <nws@exam"
		"ple.test>\r\n"
		"Cc: Group Without End: m@example.test\r\n"
		"Bcc: <>, @nolocal.example\r\n"
		"Subject:   spaced subject  \r\n"
		"Message-ID: <id@example.test>\r\n"
		"In-Reply-To: <a@b> <c@d>\r\n"
		"Date: Thu, 3 Dec 2026 00:00:00 +0000\r\n"
		"\r\n"
		"x\r\n",
		388 },
	{ "dupes",
		"Subject: first\r\n"
		"Subject: second\r\n"
		"From: a@example.test\r\n"
		"From: b@example.test\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Type: text/html\r\n"
		"\r\n"
		"x\r\n",
		148 },
	{ "weird",
		"From: a@example.test\r\n"
		"Content-Type: multipart/mixed; boundary=\"w\"\r\n"
		"\r\n"
		"--w  \r\n"
		"Content-Type: multipart/mixed\r\n"
		"\r\n"
		"no boundary here\r\n"
		"--w\011\r\n"
		"Content-Type: message/rfc822\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"\r\n"
		"RnJvbTogeEB5Cgp4Cg==\r\n"
		"--w\r\n"
		"Content-Type: message/rfc822\r\n"
		"\r\n"
		"--w\r\n"
		"Content-Type: /\r\n"
		"Content-Disposition: ; x=y\r\n"
		"Content-Language:\r\n"
		"Content-ID:\r\n"
		"\r\n"
		"x\r\n"
		"--w--\r\n",
		353 },
	{ "cut",
		"From: a@example.test\r\n"
		"Content-Type: multipart/mixed; boundary=\"c\"\r\n"
		"\r\n"
		"--c\r\n"
		"Content-Type: text/plain\r\n"
		"--c\r\n"
		"Content-Type: message/rfc822\r\n"
		"\r\n"
		"Subject: cut\r\n"
		"--c\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"--c--\r\n",
		191 },
};

static const fixture *get_fixture(const char *name)
{
	for (size_t i = 0; i < G_N_ELEMENTS(fixtures); i++) {
		if (strcmp(fixtures[i].name, name) == 0)
			return &fixtures[i];
	}
	fail_msg("no fixture %s", name);
	return NULL;
}

static imap_fetch_msg *load(const char *data, size_t len)
{
	GBytes *bytes = g_bytes_new(data, len);
	const char *error = NULL;
	imap_fetch_msg *m = imap_fetch_msg_new(bytes, &error);
	g_bytes_unref(bytes);
	if (m == NULL)
		fail_msg("imap_fetch_msg_new: %s", error);
	return m;
}

/* The answer to the content items of a line, joined by SP as in a FETCH response. */
static GByteArray *render(imap_fetch_msg *m, const char *items)
{
	imap_fetch_atts atts;
	const char *error = NULL;
	if (imap_fetch_atts_parse((const uint8_t *)items, strlen(items), &atts, &error) < 0)
		fail_msg("%s: %s", items, error);
	GByteArray *out = g_byte_array_new();
	for (size_t i = 0; i < atts.n_atts; i++) {
		if (!imap_fetch_att_from_content(&atts.atts[i]))
			continue;
		if (out->len > 0)
			g_byte_array_append(out, (const guint8 *)" ", 1);
		bool unknown_cte = true;
		if (imap_fetch_msg_item(m, &atts.atts[i], out, &unknown_cte, &error) < 0)
			fail_msg("%s: %s", items, error);
		assert_false(unknown_cte);
	}
	imap_fetch_atts_clear(&atts);
	return out;
}

static char *escape(const uint8_t *data, size_t len)
{
	GString *s = g_string_new(NULL);
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r')
			g_string_append(s, "\\r");
		else if (data[i] == '\n')
			g_string_append(s, "\\n");
		else if (data[i] < 0x20 || data[i] >= 0x7f)
			g_string_append_printf(s, "\\%03o", data[i]);
		else
			g_string_append_c(s, (char)data[i]);
	}
	return g_string_free(s, FALSE);
}

static void assert_bytes(const char *what, const uint8_t *got, size_t got_len,
			 const char *expected, size_t expected_len)
{
	if (got_len == expected_len && memcmp(got, expected, got_len) == 0)
		return;
	char *g = escape(got, got_len), *e = escape((const uint8_t *)expected, expected_len);
	fail_msg("%s:\n got (%zu):      %s\n expected (%zu): %s", what, got_len, g,
		 expected_len, e);
	g_free(g);
	g_free(e);
}

static void check_item(const char *fixture_name, const char *items, const char *expected)
{
	const fixture *f = get_fixture(fixture_name);
	imap_fetch_msg *m = load(f->data, f->len);
	GByteArray *out = render(m, items);
	char *what = g_strdup_printf("%s %s", fixture_name, items);
	assert_bytes(what, out->data, out->len, expected, strlen(expected));
	g_free(what);
	g_byte_array_unref(out);
	imap_fetch_msg_free(&m);
	assert_null(m);
}

typedef struct {
	const char *fixture;
	const char *items;
	const char *expected;
	size_t expected_len;
} item_case;

/* The real Dovecot's answers (see the top of the file). */
static const item_case dovecot_cases[] = {
	{ "simple", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 55 "
		"1 NIL NIL NIL NIL) ENVELOPE (\"Mon, 7 Feb 1994 21:52:25 -0800 (PST)\" \"afternoon"
		" meeting\" ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) ((\"Fred Fo"
		"obar\" NIL \"foobar\" \"Blurdybloop.example\")) ((\"Fred Foobar\" NIL \"foobar\" "
		"\"Blurdybloop.example\")) ((NIL NIL \"mooch\" \"owatagu.siam.edu.example\")) NIL "
		"NIL NIL \"<B27397-0100000@Blurdybloop.example>\") BODY (\"text\" \"plain\" (\"cha"
		"rset\" \"us-ascii\") NIL NIL \"7bit\" 55 1)",
		481 },
	{ "simple", "(BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2])",
		"BODY[] {326}\r\n"
		"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
		"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
		"Subject: afternoon meeting\r\n"
		"To: mooch@owatagu.siam.edu.example\r\n"
		"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
		"\r\n"
		"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
		" BODY[HEADER] {271}\r\n"
		"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
		"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
		"Subject: afternoon meeting\r\n"
		"To: mooch@owatagu.siam.edu.example\r\n"
		"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
		"\r\n"
		" BODY[TEXT] {55}\r\n"
		"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
		" BODY[1] {55}\r\n"
		"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
		" BODY[1.MIME] {271}\r\n"
		"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
		"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
		"Subject: afternoon meeting\r\n"
		"To: mooch@owatagu.siam.edu.example\r\n"
		"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
		"\r\n"
		" BODY[2] {0}\r\n",
		1081 },
	{ "simple", "RFC822.SIZE",
		"RFC822.SIZE 326",
		15 },
	{ "simple", "RFC822",
		"RFC822 {326}\r\n"
		"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
		"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
		"Subject: afternoon meeting\r\n"
		"To: mooch@owatagu.siam.edu.example\r\n"
		"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
		"\r\n"
		"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n",
		340 },
	{ "simple", "RFC822.HEADER",
		"RFC822.HEADER {271}\r\n"
		"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
		"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
		"Subject: afternoon meeting\r\n"
		"To: mooch@owatagu.siam.edu.example\r\n"
		"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
		"\r\n",
		292 },
	{ "simple", "RFC822.TEXT",
		"RFC822.TEXT {55}\r\n"
		"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n",
		73 },
	{ "simple", "BODY[]",
		"BODY[] {326}\r\n"
		"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
		"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
		"Subject: afternoon meeting\r\n"
		"To: mooch@owatagu.siam.edu.example\r\n"
		"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
		"\r\n"
		"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n",
		340 },
	{ "mixed", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-print"
		"able\" 24 1 NIL NIL NIL NIL)(\"application\" \"octet-stream\" (\"name\" \"a.bin\""
		") \"<att1@example.test>\" \"some bytes\" \"base64\" 16 NIL (\"attachment\" (\"fil"
		"ename\" \"a.bin\")) (\"en\" \"de\") \"http://example.test/a.bin\") \"mixed\" (\"b"
		"oundary\" \"XYZ\") NIL NIL NIL) ENVELOPE (\"Tue, 1 Dec 2026 10:00:00 +0000\" \"wi"
		"th attachment\" ((\"Alice A.\" NIL \"alice\" \"example.test\")) ((\"Alice A.\" NI"
		"L \"alice\" \"example.test\")) ((\"Alice A.\" NIL \"alice\" \"example.test\")) (("
		"NIL NIL \"bob\" \"example.test\")(\"Carol, C\" NIL \"carol\" \"example.test\")) ("
		"(NIL NIL \"dave\" \"example.test\")) NIL \"<prev@example.test>\" \"<mixed@example"
		".test>\") BODY ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-prin"
		"table\" 24 1)(\"application\" \"octet-stream\" (\"name\" \"a.bin\") \"<att1@examp"
		"le.test>\" \"some bytes\" \"base64\" 16) \"mixed\")",
		834 },
	{ "mixed", "(BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[1.MIME] BODY.PEEK[2.MIME] BODY.PEEK[3] BODY.PEEK[1.1])",
		"BODY[] {776}\r\n"
		"From: \"Alice A.\" <alice@example.test>\r\n"
		"To: bob@example.test, \"Carol, C\" <carol@example.test>\r\n"
		"Cc: dave@example.test\r\n"
		"Subject: with attachment\r\n"
		"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
		"Message-ID: <mixed@example.test>\r\n"
		"In-Reply-To: <prev@example.test>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
		"\r\n"
		"preamble text\r\n"
		"--XYZ\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n"
		"\r\n"
		"caf=C3=A9 =3D ok=\r\n"
		" soft\r\n"
		"--XYZ\r\n"
		"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
		"Content-ID: <att1@example.test>\r\n"
		"Content-Description: some bytes\r\n"
		"Content-Language: en, de\r\n"
		"Content-Location: http://example.test/a.bin\r\n"
		"\r\n"
		"AAECAwQFBgcICQ==\r\n"
		"--XYZ--\r\n"
		"epilogue\r\n"
		" BODY[HEADER] {317}\r\n"
		"From: \"Alice A.\" <alice@example.test>\r\n"
		"To: bob@example.test, \"Carol, C\" <carol@example.test>\r\n"
		"Cc: dave@example.test\r\n"
		"Subject: with attachment\r\n"
		"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
		"Message-ID: <mixed@example.test>\r\n"
		"In-Reply-To: <prev@example.test>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
		"\r\n"
		" BODY[TEXT] {459}\r\n"
		"preamble text\r\n"
		"--XYZ\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n"
		"\r\n"
		"caf=C3=A9 =3D ok=\r\n"
		" soft\r\n"
		"--XYZ\r\n"
		"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
		"Content-ID: <att1@example.test>\r\n"
		"Content-Description: some bytes\r\n"
		"Content-Language: en, de\r\n"
		"Content-Location: http://example.test/a.bin\r\n"
		"\r\n"
		"AAECAwQFBgcICQ==\r\n"
		"--XYZ--\r\n"
		"epilogue\r\n"
		" BODY[1] {24}\r\n"
		"caf=C3=A9 =3D ok=\r\n"
		" soft BODY[2] {16}\r\n"
		"AAECAwQFBgcICQ== BODY[1.MIME] {88}\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n"
		"\r\n"
		" BODY[2.MIME] {279}\r\n"
		"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
		"Content-ID: <att1@example.test>\r\n"
		"Content-Description: some bytes\r\n"
		"Content-Language: en, de\r\n"
		"Content-Location: http://example.test/a.bin\r\n"
		"\r\n"
		" BODY[3] {0}\r\n"
		" BODY[1.1] {24}\r\n"
		"caf=C3=A9 =3D ok=\r\n"
		" soft",
		2139 },
	{ "mixed", "(BODY.PEEK[HEADER.FIELDS (subject From)] BODY.PEEK[HEADER.FIELDS.NOT (Subject from)] BODY.PEEK[HEADER.FIELDS (\"Subject\" X-NONE)])",
		"BODY[HEADER.FIELDS (SUBJECT FROM)] {67}\r\n"
		"From: \"Alice A.\" <alice@example.test>\r\n"
		"Subject: with attachment\r\n"
		"\r\n"
		" BODY[HEADER.FIELDS.NOT (SUBJECT FROM)] {252}\r\n"
		"To: bob@example.test, \"Carol, C\" <carol@example.test>\r\n"
		"Cc: dave@example.test\r\n"
		"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
		"Message-ID: <mixed@example.test>\r\n"
		"In-Reply-To: <prev@example.test>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
		"\r\n"
		" BODY[HEADER.FIELDS (\"SUBJECT\" X-NONE)] {28}\r\n"
		"Subject: with attachment\r\n"
		"\r\n",
		481 },
	{ "mixed", "(BODY.PEEK[]<10.20> BODY.PEEK[]<775.5> BODY.PEEK[]<776.5> BODY.PEEK[]<1000.5> BODY.PEEK[1]<3.0> BODY.PEEK[]<770> BODY.PEEK[2.MIME]<0.12>)",
		"BODY[]<10> {20}\r\n"
		"ce A.\" <alice@exampl BODY[]<775> {1}\r\n"
		"\n"
		" BODY[]<776> {0}\r\n"
		" BODY[]<1000> {0}\r\n"
		" BODY[1]<3> {0}\r\n"
		" BODY[]<770> {6}\r\n"
		"ogue\r\n"
		" BODY[2.MIME]<0> {12}\r\n"
		"Content-Type",
		169 },
	{ "mixed", "(BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.HEADER.FIELDS (A)] BODY.PEEK[01])",
		"BODY[2.HEADER] {0}\r\n"
		" BODY[2.TEXT] {0}\r\n"
		" BODY[2.HEADER.FIELDS (A)] {0}\r\n"
		" BODY[01] {24}\r\n"
		"caf=C3=A9 =3D ok=\r\n"
		" soft",
		111 },
	{ "mixed", "(BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[1] BINARY.SIZE[2] BINARY.PEEK[2]<2.3> BINARY.PEEK[]  BINARY.SIZE[] BINARY.PEEK[TEXT] BINARY.PEEK[1.MIME] BINARY.PEEK[HEADER])",
		"BINARY[1] ~{15}\r\n"
		"caf\303\251 = ok soft BINARY[2] ~{10}\r\n"
		"\000\001\002\003\004\005\006\007\010\011 BINARY.SIZE[1] 15 BINARY.SIZE[2] 10 BINA"
		"RY[2]<2> ~{3}\r\n"
		"\002\003\004 BINARY[] ~{751}\r\n"
		"From: \"Alice A.\" <alice@example.test>\r\n"
		"To: bob@example.test, \"Carol, C\" <carol@example.test>\r\n"
		"Cc: dave@example.test\r\n"
		"Subject: with attachment\r\n"
		"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
		"Message-ID: <mixed@example.test>\r\n"
		"In-Reply-To: <prev@example.test>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
		"\r\n"
		"preamble text\r\n"
		"--XYZ\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: binary\r\n"
		"\r\n"
		"caf\303\251 = ok soft\r\n"
		"--XYZ\r\n"
		"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
		"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
		"Content-ID: <att1@example.test>\r\n"
		"Content-Description: some bytes\r\n"
		"Content-Language: en, de\r\n"
		"Content-Location: http://example.test/a.bin\r\n"
		"Content-Transfer-Encoding: binary\r\n"
		"\r\n"
		"\000\001\002\003\004\005\006\007\010\011\r\n"
		"--XYZ--\r\n"
		"epilogue\r\n"
		" BINARY.SIZE[] 751 BINARY[TEXT] ~{434}\r\n"
		"preamble text\r\n"
		"--XYZ\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: binary\r\n"
		"\r\n"
		"caf\303\251 = ok soft\r\n"
		"--XYZ\r\n"
		"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
		"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
		"Content-ID: <att1@example.test>\r\n"
		"Content-Description: some bytes\r\n"
		"Content-Language: en, de\r\n"
		"Content-Location: http://example.test/a.bin\r\n"
		"Content-Transfer-Encoding: binary\r\n"
		"\r\n"
		"\000\001\002\003\004\005\006\007\010\011\r\n"
		"--XYZ--\r\n"
		"epilogue\r\n"
		" BINARY[1.MIME] {88}\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n"
		"\r\n"
		" BINARY[HEADER] {317}\r\n"
		"From: \"Alice A.\" <alice@example.test>\r\n"
		"To: bob@example.test, \"Carol, C\" <carol@example.test>\r\n"
		"Cc: dave@example.test\r\n"
		"Subject: with attachment\r\n"
		"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
		"Message-ID: <mixed@example.test>\r\n"
		"In-Reply-To: <prev@example.test>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
		"\r\n",
		1812 },
	{ "nested", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE (((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1"
		"0 0 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 1"
		"6 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"inner\") NIL NIL NIL)(\"imag"
		"e\" \"png\" NIL NIL NIL \"base64\" 12 NIL (\"inline\" NIL) NIL NIL) \"mixed\" (\""
		"boundary\" \"outer\") NIL NIL NIL) ENVELOPE (NIL \"nested\" ((NIL NIL \"alice\" \""
		"example.test\")) ((NIL NIL \"alice\" \"example.test\")) ((NIL NIL \"alice\" \"exa"
		"mple.test\")) ((NIL NIL \"bob\" \"example.test\")) NIL NIL NIL NIL) BODY (((\"tex"
		"t\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 0)(\"text\" \"html\""
		" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 16 0) \"alternative\")(\"image\" \"png\""
		" NIL NIL NIL \"base64\" 12) \"mixed\")",
		681 },
	{ "nested", "(BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[1.1] BODY.PEEK[1.2] BODY.PEEK[1.2.MIME] BODY.PEEK[1.3] BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[1.1.1] BODY.PEEK[1.HEADER] BODY.PEEK[TEXT])",
		"BODY[1] {131}\r\n"
		"--inner\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"plain body\r\n"
		"--inner\r\n"
		"Content-Type: text/html; charset=\"utf-8\"\r\n"
		"\r\n"
		"<p>html body</p>\r\n"
		"--inner--\r\n"
		" BODY[1.MIME] {57}\r\n"
		"Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
		"\r\n"
		" BODY[1.1] {10}\r\n"
		"plain body BODY[1.2] {16}\r\n"
		"<p>html body</p> BODY[1.2.MIME] {44}\r\n"
		"Content-Type: text/html; charset=\"utf-8\"\r\n"
		"\r\n"
		" BODY[1.3] {0}\r\n"
		" BODY[2] {12}\r\n"
		"iVBORw0KGgo= BODY[2.MIME] {91}\r\n"
		"Content-Type: image/png\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"Content-Disposition: inline\r\n"
		"\r\n"
		" BODY[1.1.1] {10}\r\n"
		"plain body BODY[1.HEADER] {0}\r\n"
		" BODY[TEXT] {324}\r\n"
		"--outer\r\n"
		"Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
		"\r\n"
		"--inner\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"plain body\r\n"
		"--inner\r\n"
		"Content-Type: text/html; charset=\"utf-8\"\r\n"
		"\r\n"
		"<p>html body</p>\r\n"
		"--inner--\r\n"
		"\r\n"
		"--outer\r\n"
		"Content-Type: image/png\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"Content-Disposition: inline\r\n"
		"\r\n"
		"iVBORw0KGgo=\r\n"
		"--outer--\r\n",
		896 },
	{ "nested", "(BINARY.PEEK[] BINARY.PEEK[1] BINARY.PEEK[2] BINARY.PEEK[1.2] BINARY.SIZE[2])",
		"BINARY[] ~{453}\r\n"
		"From: alice@example.test\r\n"
		"To: bob@example.test\r\n"
		"Subject: nested\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=outer\r\n"
		"\r\n"
		"--outer\r\n"
		"Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
		"\r\n"
		"--inner\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"plain body\r\n"
		"--inner\r\n"
		"Content-Type: text/html; charset=\"utf-8\"\r\n"
		"\r\n"
		"<p>html body</p>\r\n"
		"--inner--\r\n"
		"\r\n"
		"--outer\r\n"
		"Content-Type: image/png\r\n"
		"Content-Disposition: inline\r\n"
		"Content-Transfer-Encoding: binary\r\n"
		"\r\n"
		"\211PNG\r\n"
		"\032\n"
		"\r\n"
		"--outer--\r\n"
		" BINARY[1] {131}\r\n"
		"--inner\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"plain body\r\n"
		"--inner\r\n"
		"Content-Type: text/html; charset=\"utf-8\"\r\n"
		"\r\n"
		"<p>html body</p>\r\n"
		"--inner--\r\n"
		" BINARY[2] ~{8}\r\n"
		"\211PNG\r\n"
		"\032\n"
		" BINARY[1.2] {16}\r\n"
		"<p>html body</p> BINARY.SIZE[2] 8",
		696 },
	{ "rfc822", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12"
		" 0 NIL NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 288 (\"Mon, 30 No"
		"v 2026 09:00:00 +0100\" \"inner message\" ((NIL NIL \"carol\" \"example.test\")) "
		"((NIL NIL \"carol\" \"example.test\")) ((NIL NIL \"carol\" \"example.test\")) ((N"
		"IL NIL \"alice\" \"example.test\")) NIL NIL NIL NIL) ((\"text\" \"plain\" (\"char"
		"set\" \"us-ascii\") NIL NIL \"7bit\" 11 0 NIL NIL NIL NIL)(\"text\" \"html\" (\"c"
		"harset\" \"us-ascii\") NIL NIL \"7bit\" 12 0 NIL NIL NIL NIL) \"alternative\" (\""
		"boundary\" \"b2\") NIL NIL NIL) 16 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b1\""
		") NIL NIL NIL) ENVELOPE (NIL \"fwd\" ((NIL NIL \"alice\" \"example.test\")) ((NIL"
		" NIL \"alice\" \"example.test\")) ((NIL NIL \"alice\" \"example.test\")) ((NIL NI"
		"L \"bob\" \"example.test\")) NIL NIL NIL NIL) BODY ((\"text\" \"plain\" (\"charse"
		"t\" \"us-ascii\") NIL NIL \"7bit\" 12 0)(\"message\" \"rfc822\" NIL NIL NIL \"7bi"
		"t\" 288 (\"Mon, 30 Nov 2026 09:00:00 +0100\" \"inner message\" ((NIL NIL \"carol\""
		" \"example.test\")) ((NIL NIL \"carol\" \"example.test\")) ((NIL NIL \"carol\" \""
		"example.test\")) ((NIL NIL \"alice\" \"example.test\")) NIL NIL NIL NIL) ((\"text"
		"\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 0)(\"text\" \"html\" "
		"(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 0) \"alternative\") 16) \"mixed\")",
		1233 },
	{ "rfc822", "(BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1] BODY.PEEK[2.2] BODY.PEEK[2.1.MIME] BODY.PEEK[2.HEADER.FIELDS (subject)] BODY.PEEK[2.HEADER.FIELDS.NOT (subject)] BODY.PEEK[2.2.1] BODY.PEEK[2.3] BODY.PEEK[2.1.1] BODY.PEEK[1.HEADER] BODY.PEEK[1.TEXT])",
		"BODY[2] {288}\r\n"
		"From: carol@example.test\r\n"
		"To: alice@example.test\r\n"
		"Subject: inner message\r\n"
		"Date: Mon, 30 Nov 2026 09:00:00 +0100\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
		"\r\n"
		"--b2\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"inner plain\r\n"
		"--b2\r\n"
		"Content-Type: text/html\r\n"
		"\r\n"
		"<b>inner</b>\r\n"
		"--b2--\r\n"
		" BODY[2.MIME] {32}\r\n"
		"Content-Type: message/rfc822\r\n"
		"\r\n"
		" BODY[2.HEADER] {186}\r\n"
		"From: carol@example.test\r\n"
		"To: alice@example.test\r\n"
		"Subject: inner message\r\n"
		"Date: Mon, 30 Nov 2026 09:00:00 +0100\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
		"\r\n"
		" BODY[2.TEXT] {102}\r\n"
		"--b2\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"inner plain\r\n"
		"--b2\r\n"
		"Content-Type: text/html\r\n"
		"\r\n"
		"<b>inner</b>\r\n"
		"--b2--\r\n"
		" BODY[2.1] {11}\r\n"
		"inner plain BODY[2.2] {12}\r\n"
		"<b>inner</b> BODY[2.1.MIME] {28}\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		" BODY[2.HEADER.FIELDS (SUBJECT)] {26}\r\n"
		"Subject: inner message\r\n"
		"\r\n"
		" BODY[2.HEADER.FIELDS.NOT (SUBJECT)] {162}\r\n"
		"From: carol@example.test\r\n"
		"To: alice@example.test\r\n"
		"Date: Mon, 30 Nov 2026 09:00:00 +0100\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
		"\r\n"
		" BODY[2.2.1] {12}\r\n"
		"<b>inner</b> BODY[2.3] {0}\r\n"
		" BODY[2.1.1] {11}\r\n"
		"inner plain BODY[1.HEADER] {0}\r\n"
		" BODY[1.TEXT] {0}\r\n",
		1182 },
	{ "rfc822", "(BINARY.PEEK[2] BINARY.PEEK[2.1] BINARY.SIZE[2])",
		"BINARY[2] {288}\r\n"
		"From: carol@example.test\r\n"
		"To: alice@example.test\r\n"
		"Subject: inner message\r\n"
		"Date: Mon, 30 Nov 2026 09:00:00 +0100\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
		"\r\n"
		"--b2\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"inner plain\r\n"
		"--b2\r\n"
		"Content-Type: text/html\r\n"
		"\r\n"
		"<b>inner</b>\r\n"
		"--b2--\r\n"
		" BINARY[2.1] {11}\r\n"
		"inner plain BINARY.SIZE[2] 288",
		354 },
	{ "msgroot", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE (\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 52 (NIL \"inner\" ((NI"
		"L NIL \"b\" \"example.test\")) ((NIL NIL \"b\" \"example.test\")) ((NIL NIL \"b\""
		" \"example.test\")) NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-as"
		"cii\") NIL NIL \"7bit\" 12 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL) ENVELOPE (NIL \""
		"outer\" ((NIL NIL \"a\" \"example.test\")) ((NIL NIL \"a\" \"example.test\")) ((N"
		"IL NIL \"a\" \"example.test\")) NIL NIL NIL NIL NIL) BODY (\"message\" \"rfc822\""
		" NIL NIL NIL \"7bit\" 52 (NIL \"inner\" ((NIL NIL \"b\" \"example.test\")) ((NIL "
		"NIL \"b\" \"example.test\")) ((NIL NIL \"b\" \"example.test\")) NIL NIL NIL NIL N"
		"IL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 1) 4)",
		650 },
	{ "msgroot", "(BODY.PEEK[1] BODY.PEEK[1.1] BODY.PEEK[1.HEADER] BODY.PEEK[HEADER] BODY.PEEK[1.TEXT] BODY.PEEK[1.1.1] BODY.PEEK[2] BODY.PEEK[1.MIME] BODY.PEEK[1.1.MIME] BODY.PEEK[TEXT])",
		"BODY[1] {52}\r\n"
		"From: b@example.test\r\n"
		"Subject: inner\r\n"
		"\r\n"
		"inner body\r\n"
		" BODY[1.1] {12}\r\n"
		"inner body\r\n"
		" BODY[1.HEADER] {40}\r\n"
		"From: b@example.test\r\n"
		"Subject: inner\r\n"
		"\r\n"
		" BODY[HEADER] {70}\r\n"
		"From: a@example.test\r\n"
		"Subject: outer\r\n"
		"Content-Type: message/rfc822\r\n"
		"\r\n"
		" BODY[1.TEXT] {12}\r\n"
		"inner body\r\n"
		" BODY[1.1.1] {0}\r\n"
		" BODY[2] {0}\r\n"
		" BODY[1.MIME] {70}\r\n"
		"From: a@example.test\r\n"
		"Subject: outer\r\n"
		"Content-Type: message/rfc822\r\n"
		"\r\n"
		" BODY[1.1.MIME] {40}\r\n"
		"From: b@example.test\r\n"
		"Subject: inner\r\n"
		"\r\n"
		" BODY[TEXT] {52}\r\n"
		"From: b@example.test\r\n"
		"Subject: inner\r\n"
		"\r\n"
		"inner body\r\n",
		533 },
	{ "noheaders", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 24 "
		"2 NIL NIL NIL NIL) ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODY (\"tex"
		"t\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 24 2)",
		205 },
	{ "noheaders", "(BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[HEADER.FIELDS (X-NONE)] BODY.PEEK[HEADER.FIELDS.NOT (X-NONE)] BODY.PEEK[1] BODY.PEEK[1.MIME])",
		"BODY[HEADER] {2}\r\n"
		"\r\n"
		" BODY[TEXT] {24}\r\n"
		"just a body\r\n"
		"two lines\r\n"
		" BODY[HEADER.FIELDS (X-NONE)] {2}\r\n"
		"\r\n"
		" BODY[HEADER.FIELDS.NOT (X-NONE)] {2}\r\n"
		"\r\n"
		" BODY[1] {24}\r\n"
		"just a body\r\n"
		"two lines\r\n"
		" BODY[1.MIME] {2}\r\n"
		"\r\n",
		200 },
	{ "missing", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 19 "
		"1 NIL NIL NIL NIL) ENVELOPE (NIL \"only a subject\" NIL NIL NIL NIL NIL NIL NIL N"
		"IL) BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 19 1)",
		218 },
	{ "eightbit", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"iso-8859-1\") NIL NIL \"8bit\" 1"
		"4 1 NIL NIL NIL NIL) ENVELOPE (NIL \"=?ISO-8859-1?Q?caf=E9?= plans\" ((\"=?UTF-8?"
		"Q?J=C3=B6rg?=\" NIL \"joerg\" \"example.test\")) ((\"=?UTF-8?Q?J=C3=B6rg?=\" NIL "
		"\"joerg\" \"example.test\")) ((\"=?UTF-8?Q?J=C3=B6rg?=\" NIL \"joerg\" \"example."
		"test\")) (({17}\r\n"
		"Bob \"the\" Builder NIL \"bob\" \"example.test\")) NIL NIL NIL NIL) BODY (\"text\""
		" \"plain\" (\"charset\" \"iso-8859-1\") NIL NIL \"8bit\" 14 1)",
		439 },
	{ "eightbit", "(BODY.PEEK[1] BINARY.PEEK[1] BODY.PEEK[TEXT]<2.3>)",
		"BODY[1] {14}\r\n"
		"caf\351 au lait\r\n"
		" BINARY[1] {14}\r\n"
		"caf\351 au lait\r\n"
		" BODY[TEXT]<2> {3}\r\n"
		"f\351 ",
		82 },
	{ "qp_b64", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"base64\" 16 "
		"0 NIL NIL NIL NIL)(\"application\" \"octet-stream\" NIL NIL NIL \"base64\" 8 NIL "
		"NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"Quoted-Print"
		"able\" 9 1 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL"
		" \"x-uuencode\" 11 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"zz\") NIL NIL NIL"
		") ENVELOPE (NIL \"encodings\" ((NIL NIL \"a\" \"example.test\")) ((NIL NIL \"a\" "
		"\"example.test\")) ((NIL NIL \"a\" \"example.test\")) NIL NIL NIL NIL NIL) BODY ("
		"(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"base64\" 16 0)(\"applicatio"
		"n\" \"octet-stream\" NIL NIL NIL \"base64\" 8)(\"text\" \"plain\" (\"charset\" \""
		"us-ascii\") NIL NIL \"Quoted-Printable\" 9 1)(\"text\" \"plain\" (\"charset\" \"u"
		"s-ascii\") NIL NIL \"x-uuencode\" 11 0) \"mixed\")",
		766 },
	{ "qp_b64", "(BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[3] BODY.PEEK[4] BINARY.PEEK[1] BINARY.PEEK[2] BINARY.PEEK[3] BINARY.PEEK[2]<1.2> BINARY.PEEK[1]<100.5> BINARY.PEEK[9])",
		"BODY[1] {16}\r\n"
		"aGVsbG8gd29ybGQK BODY[2] {8}\r\n"
		"AAEAAg== BODY[3] {9}\r\n"
		"a=3Db=\r\n"
		"c BODY[4] {11}\r\n"
		"begin 644 x BINARY[1] ~{12}\r\n"
		"hello world\n"
		" BINARY[2] ~{4}\r\n"
		"\000\001\000\002 BINARY[3] ~{4}\r\n"
		"a=bc BINARY[2]<1> ~{2}\r\n"
		"\001\000 BINARY[1]<100> ~{0}\r\n"
		" BINARY[9] {0}\r\n",
		233 },
	{ "notrail", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 9 0"
		" NIL NIL NIL NIL) ENVELOPE (NIL \"no trailing crlf\" ((NIL NIL \"a\" \"example.te"
		"st\")) ((NIL NIL \"a\" \"example.test\")) ((NIL NIL \"a\" \"example.test\")) NIL "
		"NIL NIL NIL NIL) BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7b"
		"it\" 9 0)",
		299 },
	{ "notrail", "(BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[]<55.10>)",
		"BODY[HEADER] {51}\r\n"
		"From: a@example.test\r\n"
		"Subject: no trailing crlf\r\n"
		"\r\n"
		" BODY[TEXT] {9}\r\n"
		"last line BODY[1] {9}\r\n"
		"last line BODY[HEADER.FIELDS (SUBJECT)] {29}\r\n"
		"Subject: no trailing crlf\r\n"
		"\r\n"
		" BODY[]<55> {5}\r\n"
		" line",
		207 },
	{ "lfonly", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 "
		"0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
		" 6 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"q\") NIL NIL NIL) ENVELOPE (NIL \""
		"lf only\" ((NIL NIL \"a\" \"example.test\")) ((NIL NIL \"a\" \"example.test\")) ("
		"(NIL NIL \"a\" \"example.test\")) NIL NIL NIL NIL NIL) BODY ((\"text\" \"plain\" "
		"(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0)(\"text\" \"plain\" (\"charset\" "
		"\"us-ascii\") NIL NIL \"7bit\" 6 0) \"mixed\")",
		471 },
	{ "lfonly", "(BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
		"BODY[] {147}\r\n"
		"From: a@example.test\r\n"
		"Subject: lf only\r\n"
		"Content-Type: multipart/mixed; boundary=q\r\n"
		"\r\n"
		"--q\r\n"
		"\r\n"
		"first\r\n"
		"--q\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"second\r\n"
		"--q--\r\n"
		" BODY[HEADER] {85}\r\n"
		"From: a@example.test\r\n"
		"Subject: lf only\r\n"
		"Content-Type: multipart/mixed; boundary=q\r\n"
		"\r\n"
		" BODY[1] {5}\r\n"
		"first BODY[1.MIME] {2}\r\n"
		"\r\n"
		" BODY[2] {6}\r\n"
		"second BODY[2.MIME] {28}\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		" BODY[HEADER.FIELDS (SUBJECT)] {20}\r\n"
		"Subject: lf only\r\n"
		"\r\n",
		431 },
	{ "group", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1"
		" NIL NIL NIL NIL) ENVELOPE (NIL \"group\" ((\"Boss\" NIL \"boss\" \"example.test\""
		")) ((NIL NIL \"secretary\" \"example.test\")) ((NIL NIL \"replies\" \"example.tes"
		"t\")) ((NIL NIL \"A Group\" NIL)(NIL NIL \"ann\" \"example.test\")(\"Bo B\" NIL \""
		"bo\" \"example.test\")(NIL NIL NIL NIL)(NIL NIL \"solo\" \"example.test\")) ((NIL"
		" NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) ((\"Hidden Person\" NIL \""
		"hidden\" \"example.test\")) NIL \"<grp@example.test>\") BODY (\"text\" \"plain\" "
		"(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1)",
		555 },
	{ "rfc2047", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"utf-8\" \"format\" \"flowed\") N"
		"IL NIL \"7bit\" 6 1 NIL (\"inline\" (\"filename*\" \"utf-8''%C3%A4.txt\")) NIL NI"
		"L) ENVELOPE (\"Wed, 2 Dec 2026 04:00:00 +0000\" {48}\r\n"
		"=?utf-8?B?SGVsbG8g8J+Ygg==?= =?utf-8?Q?_folded?= ((\"=?utf-8?B?w4Rrc2Vs?=\" NIL \""
		"a\" \"example.test\")) ((\"=?utf-8?B?w4Rrc2Vs?=\" NIL \"a\" \"example.test\")) (("
		"\"=?utf-8?B?w4Rrc2Vs?=\" NIL \"a\" \"example.test\")) NIL NIL NIL NIL NIL) BODY ("
		"\"text\" \"plain\" (\"charset\" \"utf-8\" \"format\" \"flowed\") NIL NIL \"7bit\""
		" 6 1)",
		492 },
	{ "headeronly", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0"
		" NIL NIL NIL NIL) ENVELOPE (NIL \"header only\" ((NIL NIL \"a\" \"example.test\")"
		") ((NIL NIL \"a\" \"example.test\")) ((NIL NIL \"a\" \"example.test\")) NIL NIL N"
		"IL NIL NIL) BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
		"0 0)",
		294 },
	{ "headeronly", "(BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)] BODY.PEEK[HEADER.FIELDS.NOT (FROM SUBJECT)] BODY.PEEK[1] BODY.PEEK[1.MIME])",
		"BODY[HEADER] {44}\r\n"
		"From: a@example.test\r\n"
		"Subject: header only\r\n"
		" BODY[TEXT] {0}\r\n"
		" BODY[HEADER.FIELDS (SUBJECT)] {24}\r\n"
		"Subject: header only\r\n"
		"\r\n"
		" BODY[HEADER.FIELDS.NOT (SUBJECT)] {22}\r\n"
		"From: a@example.test\r\n"
		" BODY[HEADER.FIELDS.NOT (FROM SUBJECT)] {0}\r\n"
		" BODY[1] {0}\r\n"
		" BODY[1.MIME] {44}\r\n"
		"From: a@example.test\r\n"
		"Subject: header only\r\n",
		327 },
	{ "digest", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE ((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 45 (NIL \"one\" ((NIL"
		" NIL \"one\" \"example.test\")) ((NIL NIL \"one\" \"example.test\")) ((NIL NIL \""
		"one\" \"example.test\")) NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \""
		"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)(\"text\" \"p"
		"lain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 0 NIL NIL NIL NIL) \"digest"
		"\" (\"boundary\" \"d\") NIL NIL NIL) ENVELOPE (NIL \"digest\" ((NIL NIL \"list\" "
		"\"example.test\")) ((NIL NIL \"list\" \"example.test\")) ((NIL NIL \"list\" \"exa"
		"mple.test\")) NIL NIL NIL NIL NIL) BODY ((\"message\" \"rfc822\" NIL NIL NIL \"7b"
		"it\" 45 (NIL \"one\" ((NIL NIL \"one\" \"example.test\")) ((NIL NIL \"one\" \"exa"
		"mple.test\")) ((NIL NIL \"one\" \"example.test\")) NIL NIL NIL NIL NIL) (\"text\""
		" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0) 3)(\"text\" \"plain\""
		" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 0) \"digest\")",
		851 },
	{ "digest", "(BODY.PEEK[1] BODY.PEEK[1.HEADER] BODY.PEEK[1.TEXT] BODY.PEEK[1.1] BODY.PEEK[2])",
		"BODY[1] {45}\r\n"
		"From: one@example.test\r\n"
		"Subject: one\r\n"
		"\r\n"
		"first BODY[1.HEADER] {40}\r\n"
		"From: one@example.test\r\n"
		"Subject: one\r\n"
		"\r\n"
		" BODY[1.TEXT] {5}\r\n"
		"first BODY[1.1] {5}\r\n"
		"first BODY[2] {13}\r\n"
		"not a message",
		194 },
	{ "emptymp", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 "
		"0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"none\") NIL NIL NIL) ENVELOPE (NIL N"
		"IL ((NIL NIL \"a\" \"example.test\")) ((NIL NIL \"a\" \"example.test\")) ((NIL NI"
		"L \"a\" \"example.test\")) NIL NIL NIL NIL NIL) BODY ((\"text\" \"plain\" (\"char"
		"set\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")",
		336 },
	{ "emptymp", "(BODY.PEEK[1] BODY.PEEK[TEXT])",
		"BODY[1] {0}\r\n"
		" BODY[TEXT] {20}\r\n"
		"no boundaries here\r\n",
		51 },
	{ "cases", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE ((\"Application\" \"Octet-Stream\" (\"NAME\" \"A.BIN\" \"Charset\" "
		"\"UTF-8\") NIL NIL \"BASE64\" 4 NIL (\"ATTACHMENT\" (\"FILENAME\" \"A.BIN\")) (\""
		"EN\") NIL)(\"text\" \"plain\" (\"charset\" \"UTF-8\" \"format\" \"Flowed\") NIL N"
		"IL \"8Bit\" 1 0 NIL NIL NIL NIL) \"Mixed\" (\"BOUNDARY\" \"Bb\" \"X-Param\" \"VaL"
		"uE\") NIL NIL NIL) ENVELOPE (NIL NIL ((NIL NIL \"a\" \"example.test\")) ((NIL NIL"
		" \"a\" \"example.test\")) ((NIL NIL \"a\" \"example.test\")) NIL NIL NIL NIL NIL)"
		" BODY ((\"Application\" \"Octet-Stream\" (\"NAME\" \"A.BIN\" \"Charset\" \"UTF-8\""
		") NIL NIL \"BASE64\" 4)(\"text\" \"plain\" (\"charset\" \"UTF-8\" \"format\" \"Fl"
		"owed\") NIL NIL \"8Bit\" 1 0) \"Mixed\")",
		601 },
	{ "cs", "(BODYSTRUCTURE BODY)",
		"BODYSTRUCTURE ((\"text\" \"plain\" (\"format\" \"flowed\" \"charset\" \"us-ascii\""
		") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL)(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCI"
		"I\" \"format\" \"flowed\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL)(\"text\" \"plain"
		"\" (\"charset\" \"US-ASCII\") NIL NIL \"7BIT\" 1 0 NIL NIL NIL NIL)(\"text\" \"ht"
		"ml\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 1 0 NIL NIL NIL NIL)(\"text\" \""
		"plain\" (\"charset\" \"US-ASCII\") NIL NIL \"base64\" 4 0 NIL NIL NIL NIL)(\"text"
		"\" \"plain\" (\"charset\" \"US-ASCII\") \"<x@y>\" NIL \"7bit\" 1 0 NIL NIL NIL NI"
		"L)(\"text\" \"\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL)"
		"(\"application\" \"x-foo\" (\"charset\" \"US-ASCII\") NIL NIL \"7bit\" 1 NIL NIL "
		"NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL) BODY ((\"text\" \"plain\" (\""
		"format\" \"flowed\" \"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0)(\"TEXT\" \"PL"
		"AIN\" (\"CHARSET\" \"US-ASCII\" \"format\" \"flowed\") NIL NIL \"7bit\" 1 0)(\"te"
		"xt\" \"plain\" (\"charset\" \"US-ASCII\") NIL NIL \"7BIT\" 1 0)(\"text\" \"html\""
		" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 1 0)(\"text\" \"plain\" (\"charset\""
		" \"US-ASCII\") NIL NIL \"base64\" 4 0)(\"text\" \"plain\" (\"charset\" \"US-ASCII"
		"\") \"<x@y>\" NIL \"7bit\" 1 0)(\"text\" \"\" (\"charset\" \"us-ascii\") NIL NIL "
		"\"7bit\" 1 0)(\"application\" \"x-foo\" (\"charset\" \"US-ASCII\") NIL NIL \"7bit"
		"\" 1) \"mixed\")",
		1207 },
	{ "addrs", "(BODYSTRUCTURE BODY)",
		"BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1"
		" NIL NIL NIL NIL) BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7"
		"bit\" 3 1)",
		152 },
	{ "dupes", "(BODYSTRUCTURE ENVELOPE BODY)",
		"BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 3 1 NI"
		"L NIL NIL NIL) ENVELOPE (NIL \"second\" ((NIL NIL \"a\" \"example.test\")(NIL NIL"
		" \"b\" \"example.test\")) ((NIL NIL \"a\" \"example.test\")(NIL NIL \"b\" \"examp"
		"le.test\")) ((NIL NIL \"a\" \"example.test\")(NIL NIL \"b\" \"example.test\")) NI"
		"L NIL NIL NIL NIL) BODY (\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bi"
		"t\" 3 1)",
		367 },
	{ "weird", "(BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[1.1] BODY.PEEK[2] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1] BODY.PEEK[3] BODY.PEEK[3.1] BODY.PEEK[4.MIME] BINARY.PEEK[2] BINARY.PEEK[])",
		"BODYSTRUCTURE (((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0"
		" 0 NIL NIL NIL NIL) \"mixed\" NIL NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL"
		" \"base64\" 22 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"c"
		"harset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) 1 NIL NIL NIL NIL)(\""
		"message\" \"rfc822\" NIL NIL NIL \"7bit\" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL "
		"NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL "
		"NIL NIL) 0 NIL NIL NIL NIL)(\"\" \"\" NIL \"\" NIL \"7bit\" 1 NIL (\"\" (\"x\" \""
		"y\")) NIL NIL) \"mixed\" (\"boundary\" \"w\") NIL NIL NIL) BODY[1] {16}\r\n"
		"no boundary here BODY[1.1] {0}\r\n"
		" BODY[2] {22}\r\n"
		"RnJvbTogeEB5Cgp4Cg==\r\n"
		" BODY[2.HEADER] {20}\r\n"
		"RnJvbTogeEB5Cgp4Cg== BODY[2.TEXT] {0}\r\n"
		" BODY[2.1] {0}\r\n"
		" BODY[3] {0}\r\n"
		" BODY[3.1] {0}\r\n"
		" BODY[4.MIME] {79}\r\n"
		"Content-Type: /\r\n"
		"Content-Disposition: ; x=y\r\n"
		"Content-Language:\r\n"
		"Content-ID:\r\n"
		"\r\n"
		" BINARY[2] {22}\r\n"
		"RnJvbTogeEB5Cgp4Cg==\r\n"
		" BINARY[] {353}\r\n"
		"From: a@example.test\r\n"
		"Content-Type: multipart/mixed; boundary=\"w\"\r\n"
		"\r\n"
		"--w  \r\n"
		"Content-Type: multipart/mixed\r\n"
		"\r\n"
		"no boundary here\r\n"
		"--w\011\r\n"
		"Content-Type: message/rfc822\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"\r\n"
		"RnJvbTogeEB5Cgp4Cg==\r\n"
		"--w\r\n"
		"Content-Type: message/rfc822\r\n"
		"\r\n"
		"--w\r\n"
		"Content-Type: /\r\n"
		"Content-Disposition: ; x=y\r\n"
		"Content-Language:\r\n"
		"Content-ID:\r\n"
		"\r\n"
		"x\r\n"
		"--w--\r\n",
		1261 },
	{ "cut", "(BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1] BODY.PEEK[3.MIME] BODY.PEEK[3] BINARY.PEEK[])",
		"BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 "
		"0 NIL NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 14 (NIL \"cut\" NI"
		"L NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL"
		" NIL \"7bit\" 0 0 NIL NIL NIL NIL) 1 NIL NIL NIL NIL)(\"text\" \"plain\" (\"chars"
		"et\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" "
		"\"c\") NIL NIL NIL) BODY[1] {0}\r\n"
		" BODY[1.MIME] {24}\r\n"
		"Content-Type: text/plain BODY[2] {14}\r\n"
		"Subject: cut\r\n"
		" BODY[2.HEADER] {12}\r\n"
		"Subject: cut BODY[2.TEXT] {0}\r\n"
		" BODY[2.1] {0}\r\n"
		" BODY[3.MIME] {26}\r\n"
		"Content-Type: text/plain\r\n"
		" BODY[3] {0}\r\n"
		" BINARY[] {191}\r\n"
		"From: a@example.test\r\n"
		"Content-Type: multipart/mixed; boundary=\"c\"\r\n"
		"\r\n"
		"--c\r\n"
		"Content-Type: text/plain\r\n"
		"--c\r\n"
		"Content-Type: message/rfc822\r\n"
		"\r\n"
		"Subject: cut\r\n"
		"--c\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"--c--\r\n",
		804 },
	{ "addrs", "(BODY.PEEK[HEADER.FIELDS (SUBJECT CONTENT-TYPE)] BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT CONTENT-TYPE)])",
		"BODY[HEADER.FIELDS (SUBJECT CONTENT-TYPE)] {31}\r\n"
		"Subject:   spaced subject  \r\n"
		"\r\n"
		" BODY[HEADER.FIELDS.NOT (SUBJECT CONTENT-TYPE)] {356}\r\n"
		"From: justlocal\r\n"
		"Sender:\r\n"
		"Reply-To: \"Quoted, Name\" <q@example.test>, <@route1,@route2:r@example.test>\r\n"
		"To: a@b.example (Comment Name), \"x y\"@example.test, Name With  Spaces <nws@exam"
		"ple.test>\r\n"
		"Cc: Group Without End: m@example.test\r\n"
		"Bcc: <>, @nolocal.example\r\n"
		"Message-ID: <id@example.test>\r\n"
		"In-Reply-To: <a@b> <c@d>\r\n"
		"Date: Thu, 3 Dec 2026 00:00:00 +0000\r\n"
		"\r\n",
		491 },
};

/* Dovecot sends literal8 for whatever it decoded; sealpost only where a NUL needs it. */
static GByteArray *without_literal8(const uint8_t *data, size_t len)
{
	GByteArray *out = g_byte_array_new();
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '~' && i + 1 < len && data[i + 1] == '{')
			continue;
		g_byte_array_append(out, data + i, 1);
	}
	return out;
}

static void test_dovecot_answers(void **state)
{
	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(dovecot_cases); i++) {
		const item_case *c = &dovecot_cases[i];
		const fixture *f = get_fixture(c->fixture);
		imap_fetch_msg *m = load(f->data, f->len);
		GByteArray *out = render(m, c->items);
		GByteArray *got = without_literal8(out->data, out->len);
		GByteArray *exp = without_literal8((const uint8_t *)c->expected, c->expected_len);
		char *what = g_strdup_printf("%s %s", c->fixture, c->items);
		assert_bytes(what, got->data, got->len, (const char *)exp->data, exp->len);
		g_free(what);
		g_byte_array_unref(got);
		g_byte_array_unref(exp);
		g_byte_array_unref(out);
		imap_fetch_msg_free(&m);
	}
}

static void test_rfc822_items(void **state)
{
	(void)state;
	const fixture *f = get_fixture("simple");
	imap_fetch_msg *m = load(f->data, f->len);
	assert_int_equal(imap_fetch_msg_size(m), 326);
	imap_fetch_msg_free(&m);
	check_item("notrail", "RFC822.SIZE", "RFC822.SIZE 60");
	check_item("notrail", "(RFC822.HEADER RFC822.TEXT)",
		   "RFC822.HEADER {51}\r\nFrom: a@example.test\r\nSubject: no trailing crlf\r\n\r\n "
		   "RFC822.TEXT {9}\r\nlast line");
	check_item("notrail", "RFC822", "RFC822 {60}\r\nFrom: a@example.test\r\n"
		   "Subject: no trailing crlf\r\n\r\nlast line");
	check_item("headeronly", "(RFC822.HEADER RFC822.TEXT RFC822.SIZE)",
		   "RFC822.HEADER {44}\r\nFrom: a@example.test\r\nSubject: header only\r\n "
		   "RFC822.TEXT {0}\r\n RFC822.SIZE 44");
}

/* Bare LFs are served as CRLF, so sizes count two octets per line end (as Dovecot's
 * RFC822.SIZE 147 for this message). */
static void test_lf_only(void **state)
{
	(void)state;
	const fixture *f = get_fixture("lfonly");
	imap_fetch_msg *m = load(f->data, f->len);
	assert_int_equal(imap_fetch_msg_size(m), 147);
	GByteArray *out = render(m, "(BODY.PEEK[2] BODY.PEEK[HEADER]<0.22>)");
	assert_bytes("lfonly", out->data, out->len,
		     "BODY[2] {6}\r\nsecond BODY[HEADER]<0> {22}\r\nFrom: a@example.test\r\n", 64);
	g_byte_array_unref(out);
	imap_fetch_msg_free(&m);
	check_item("noheaders", "RFC822.SIZE", "RFC822.SIZE 26");
	/* A lone CR stays as it is. */
	static const char cr[] = "Subject: x\r\n\r\na\rb\n";
	m = load(cr, sizeof(cr) - 1);
	assert_int_equal(imap_fetch_msg_size(m), sizeof(cr));
	imap_fetch_msg_free(&m);
}

static void test_partial_edges(void **state)
{
	(void)state;
	/* simple is 326 octets and its last is LF. */
	check_item("simple", "BODY.PEEK[]<326.10>", "BODY[]<326> {0}\r\n");
	check_item("simple", "BODY.PEEK[]<327.1>", "BODY[]<327> {0}\r\n");
	check_item("simple", "BODY.PEEK[]<325.10>", "BODY[]<325> {1}\r\n\n");
	check_item("simple", "BODY.PEEK[]<0.0>", "BODY[]<0> {0}\r\n");
	check_item("simple", "BODY.PEEK[]<10.0>", "BODY[]<10> {0}\r\n");
	check_item("simple", "BODY.PEEK[]<18446744073709551614.1>",
		   "BODY[]<18446744073709551614> {0}\r\n");
	check_item("simple", "BODY.PEEK[]<320>", "BODY[]<320> {6}\r\nrow?\r\n");
	check_item("simple", "BODY.PEEK[TEXT]<0.5>", "BODY[TEXT]<0> {5}\r\nHello");
	check_item("simple", "BODY.PEEK[TEXT]<50.100>", "BODY[TEXT]<50> {5}\r\now?\r\n");
	check_item("simple", "BODY.PEEK[HEADER.FIELDS (subject)]<9.8>",
		   "BODY[HEADER.FIELDS (SUBJECT)]<9> {8}\r\nafternoo");
	check_item("simple", "RFC822.SIZE", "RFC822.SIZE 326");
	check_item("qp_b64", "BINARY.PEEK[1]<6.100>", "BINARY[1]<6> {6}\r\nworld\n");
	check_item("qp_b64", "BINARY.PEEK[1]<12.1>", "BINARY[1]<12> {0}\r\n");
}

static void test_missing_parts(void **state)
{
	(void)state;
	check_item("simple", "(BODY.PEEK[9] BODY.PEEK[2.MIME] BODY.PEEK[1.1] BODY.PEEK[1.HEADER] "
		   "BODY.PEEK[1.TEXT] BODY.PEEK[1.HEADER.FIELDS (A)])",
		   "BODY[9] {0}\r\n BODY[2.MIME] {0}\r\n BODY[1.1] {0}\r\n BODY[1.HEADER] {0}\r\n "
		   "BODY[1.TEXT] {0}\r\n BODY[1.HEADER.FIELDS (A)] {0}\r\n");
	check_item("mixed", "(BODY.PEEK[3.MIME] BODY.PEEK[1.2] BODY.PEEK[9.9.9]<0.1>)",
		   "BODY[3.MIME] {0}\r\n BODY[1.2] {0}\r\n BODY[9.9.9]<0> {0}\r\n");
	check_item("mixed", "(BINARY.PEEK[9] BINARY.SIZE[9] BINARY.SIZE[1.2])",
		   "BINARY[9] {0}\r\n BINARY.SIZE[9] 0 BINARY.SIZE[1.2] 0");
	check_item("emptymp", "(BODY.PEEK[1] BODY.PEEK[1.MIME])",
		   "BODY[1] {0}\r\n BODY[1.MIME] {0}\r\n");
}

static void test_binary(void **state)
{
	(void)state;
	const fixture *f = get_fixture("qp_b64");
	imap_fetch_msg *m = load(f->data, f->len);
	GByteArray *out = render(m, "(BINARY.PEEK[2] BINARY[2]<1.2> BINARY[2]<1.1> BINARY.SIZE[2] "
				 "BINARY[1] BINARY[3] BINARY.SIZE[3])");
	static const char expected[] =
		"BINARY[2] ~{4}\r\n\0\1\0\2 BINARY[2]<1> ~{2}\r\n\1\0 BINARY[2]<1> {1}\r\n\1 "
		"BINARY.SIZE[2] 4 BINARY[1] {12}\r\nhello world\n BINARY[3] {4}\r\na=bc "
		"BINARY.SIZE[3] 4";
	assert_bytes("binary", out->data, out->len, expected, sizeof(expected) - 1);
	g_byte_array_unref(out);
	imap_fetch_msg_free(&m);

	/* QP of the mixed fixture: soft line breaks joined, =XX decoded. */
	check_item("mixed", "BINARY.PEEK[1]", "BINARY[1] {15}\r\ncaf\303\251 = ok soft");
	/* 7bit/8bit/binary are unchanged. */
	check_item("eightbit", "BINARY.PEEK[1]", "BINARY[1] {14}\r\ncaf\351 au lait\r\n");
	/* BINARY.SIZE of a multipart is the size of what BINARY[1] returns (Dovecot says
	 * 127 here while its BINARY[1] has 131 octets). */
	check_item("nested", "(BINARY.SIZE[1] BINARY.SIZE[2])", "BINARY.SIZE[1] 131 BINARY.SIZE[2] 8");
}

/* A NUL cannot travel in a plain literal: BODY sends 0x80 in its place, BINARY a
 * literal8 (checked against Dovecot, APPENDed with a literal8). */
static void test_nul(void **state)
{
	(void)state;
	static const char msg[] = "Subject: nul\r\nContent-Type: application/octet-stream\r\n"
		"\r\na\0b\r\n";
	imap_fetch_msg *m = load(msg, sizeof(msg) - 1);
	GByteArray *out = render(m, "(RFC822.SIZE BODY.PEEK[1] BINARY.PEEK[1] BODY.PEEK[]<58.3> "
				 "RFC822.TEXT BODYSTRUCTURE)");
	static const char expected[] =
		"RFC822.SIZE 61 BODY[1] {5}\r\na\200b\r\n BINARY[1] ~{5}\r\na\0b\r\n "
		"BODY[]<58> {3}\r\nb\r\n RFC822.TEXT {5}\r\na\200b\r\n BODYSTRUCTURE "
		"(\"application\" \"octet-stream\" NIL NIL NIL \"7bit\" 5 NIL NIL NIL NIL)";
	assert_bytes("nul", out->data, out->len, expected, sizeof(expected) - 1);
	g_byte_array_unref(out);
	imap_fetch_msg_free(&m);
}

static void test_unknown_cte(void **state)
{
	(void)state;
	const fixture *f = get_fixture("qp_b64");
	imap_fetch_msg *m = load(f->data, f->len);
	static const char *const items[] = {
		"BINARY[4]", "BINARY.PEEK[4]<0.1>", "BINARY.SIZE[4]", "BINARY[]", "BINARY.SIZE[]",
		"BINARY[TEXT]",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(items); i++) {
		imap_fetch_atts atts;
		const char *error = NULL;
		assert_int_equal(imap_fetch_atts_parse((const uint8_t *)items[i], strlen(items[i]),
						       &atts, &error), 0);
		GByteArray *out = g_byte_array_new();
		bool unknown = false;
		error = NULL;
		if (imap_fetch_msg_item(m, &atts.atts[0], out, &unknown, &error) != -1 || !unknown)
			fail_msg("%s", items[i]);
		assert_non_null(error);
		assert_int_equal(out->len, 0);
		g_byte_array_unref(out);
		imap_fetch_atts_clear(&atts);
	}
	imap_fetch_msg_free(&m);
	/* The raw bytes and the MIME header are still there. */
	check_item("qp_b64", "(BODY.PEEK[4] BINARY.PEEK[4.MIME])",
		   "BODY[4] {11}\r\nbegin 644 x BINARY[4.MIME] {67}\r\nContent-Type: text/plain\r\n"
		   "Content-Transfer-Encoding: x-uuencode\r\n\r\n");
}

static void test_section_echo(void **state)
{
	(void)state;
	check_item("simple", "body.peek[header.fields (subject)]",
		   "BODY[HEADER.FIELDS (SUBJECT)] {30}\r\nSubject: afternoon meeting\r\n\r\n");
	/* A literal in the request is answered in the canonical form. */
	check_item("simple", "BODY.PEEK[HEADER.FIELDS ({7}\r\nsubject \"x y\")]",
		   "BODY[HEADER.FIELDS (SUBJECT \"X Y\")] {30}\r\n"
		   "Subject: afternoon meeting\r\n\r\n");
	check_item("simple", "body[1.mime]<0.4>", "BODY[1.MIME]<0> {4}\r\nDate");
	check_item("simple", "binary.peek[01]<0.5>", "BINARY[01]<0> {5}\r\nHello");
}

static void test_header_fields(void **state)
{
	(void)state;
	/* A folded field comes with its continuation lines; order is the header's. */
	check_item("rfc2047", "BODY.PEEK[HEADER.FIELDS (subject from content-type)]",
		   "BODY[HEADER.FIELDS (SUBJECT FROM CONTENT-TYPE)] {166}\r\n"
		   "From: =?utf-8?B?w4Rrc2Vs?= <a@example.test>\r\n"
		   "Subject: =?utf-8?B?SGVsbG8g8J+Ygg==?=\r\n =?utf-8?Q?_folded?=\r\n"
		   "Content-Type: text/plain; charset=\"utf-8\"; format=flowed\r\n\r\n");
	check_item("dupes", "BODY.PEEK[HEADER.FIELDS (Subject)]",
		   "BODY[HEADER.FIELDS (SUBJECT)] {35}\r\nSubject: first\r\nSubject: second\r\n\r\n");
	check_item("dupes", "BODY.PEEK[HEADER.FIELDS.NOT (Subject content-type)]",
		   "BODY[HEADER.FIELDS.NOT (SUBJECT CONTENT-TYPE)] {46}\r\n"
		   "From: a@example.test\r\nFrom: b@example.test\r\n\r\n");
	/* Only a whole name matches, not a prefix. */
	check_item("dupes", "BODY.PEEK[HEADER.FIELDS (Subj Content)]",
		   "BODY[HEADER.FIELDS (SUBJ CONTENT)] {2}\r\n\r\n");
}

/* Where sealpost's ENVELOPE strings differ from Dovecot's on purpose: Dovecot sends
 * "Subject:   spaced subject  " as a literal, sealpost the same trimmed value quoted. */
static void test_envelope_strings(void **state)
{
	(void)state;
	check_item("addrs", "ENVELOPE",
		   "ENVELOPE (\"Thu, 3 Dec 2026 00:00:00 +0000\" \"spaced subject\" "
		   "((NIL NIL \"justlocal\" \"MISSING_DOMAIN\")) "
		   "((NIL NIL \"justlocal\" \"MISSING_DOMAIN\")) "
		   "((\"Quoted, Name\" NIL \"q\" \"example.test\")"
		   "(NIL \"@route1,@route2\" \"r\" \"example.test\")) "
		   "((\"Comment Name\" NIL \"a\" \"b.example\")(NIL NIL \"x y\" \"example.test\")"
		   "(\"Name With Spaces\" NIL \"nws\" \"example.test\")) "
		   "((NIL NIL \"Group Without End\" NIL)(NIL NIL \"m\" \"example.test\")"
		   "(NIL NIL NIL NIL)) "
		   "((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")"
		   "(NIL NIL \"MISSING_MAILBOX\" \"nolocal.example\")) "
		   "\"<a@b> <c@d>\" \"<id@example.test>\")");
}

static void test_empty_message(void **state)
{
	(void)state;
	imap_fetch_msg *m = load("", 0);
	assert_int_equal(imap_fetch_msg_size(m), 0);
	GByteArray *out = render(m, "(BODYSTRUCTURE ENVELOPE BODY[] BODY[HEADER] BODY[TEXT] "
				 "BODY[1] BINARY[] BINARY.SIZE[1] RFC822.SIZE)");
	static const char expected[] =
		"BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 "
		"NIL NIL NIL NIL) ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) "
		"BODY[] {0}\r\n BODY[HEADER] {0}\r\n BODY[TEXT] {0}\r\n BODY[1] {0}\r\n "
		"BINARY[] {0}\r\n BINARY.SIZE[1] 0 RFC822.SIZE 0";
	assert_bytes("empty", out->data, out->len, expected, sizeof(expected) - 1);
	g_byte_array_unref(out);
	imap_fetch_msg_free(&m);
	imap_fetch_msg_free(&m);	/* NULL is fine */
}

static void test_not_from_content(void **state)
{
	(void)state;
	imap_fetch_msg *m = load("Subject: x\r\n\r\n", 14);
	static const char *const items[] = { "UID", "FLAGS", "INTERNALDATE", "MODSEQ", "X-FOO" };
	for (size_t i = 0; i < G_N_ELEMENTS(items); i++) {
		imap_fetch_atts atts;
		const char *error = NULL;
		assert_int_equal(imap_fetch_atts_parse((const uint8_t *)items[i], strlen(items[i]),
						       &atts, &error), 0);
		GByteArray *out = g_byte_array_new();
		bool unknown = true;
		assert_int_equal(imap_fetch_msg_item(m, &atts.atts[0], out, &unknown, &error), -1);
		assert_false(unknown);
		assert_int_equal(out->len, 0);
		g_byte_array_unref(out);
		imap_fetch_atts_clear(&atts);
	}
	imap_fetch_msg_free(&m);
}

/* Items made by hand that the parser would never produce are refused, not followed. */
static void test_invalid_att(void **state)
{
	(void)state;
	imap_fetch_msg *m = load("Subject: x\r\n\r\nbody\r\n", 20);
	imap_fetch_att bad[5];
	memset(bad, 0, sizeof(bad));
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
		bad[i].type = IMAP_FETCH_BODY_SECTION;
	bad[0].n_part = 1;		/* part number 0 */
	bad[1].n_part = IMAP_FETCH_MAX_PART_DEPTH + 1;
	bad[2].spec = IMAP_FETCH_SPEC_MIME;	/* MIME without a part */
	bad[3].partial = true;
	bad[3].partial_start = UINT64_MAX;
	bad[3].partial_len = 1;
	bad[4].spec = IMAP_FETCH_SPEC_HEADER_FIELDS;
	bad[4].n_fields = 1;		/* fields[0] NULL */
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		GByteArray *out = g_byte_array_new();
		bool unknown = true;
		const char *error = NULL;
		if (imap_fetch_msg_item(m, &bad[i], out, &unknown, &error) != -1)
			fail_msg("bad att %zu accepted", i);
		assert_false(unknown);
		assert_non_null(error);
		assert_int_equal(out->len, 0);
		g_byte_array_unref(out);
	}
	/* A zeroed att of a type is a valid one: BODY[]. */
	GByteArray *out = g_byte_array_new();
	bool unknown;
	const char *error;
	assert_int_equal(imap_fetch_msg_item(m, &bad[2], out, &unknown, &error), -1);
	bad[2].spec = IMAP_FETCH_SPEC_NONE;
	assert_int_equal(imap_fetch_msg_item(m, &bad[2], out, &unknown, &error), 0);
	assert_bytes("BODY[]", out->data, out->len, "BODY[] {20}\r\nSubject: x\r\n\r\nbody\r\n",
		     33);
	g_byte_array_unref(out);
	imap_fetch_msg_free(&m);
}

static GString *nested_rfc822(unsigned levels)
{
	GString *s = g_string_new(NULL);
	for (unsigned i = 0; i < levels; i++)
		g_string_append(s, "Content-Type: message/rfc822\r\n\r\n");
	g_string_append(s, "Subject: inner\r\n\r\nx\r\n");
	return s;
}

static void test_limits(void **state)
{
	(void)state;
	const char *error = NULL;
	/* 100 levels of message/rfc822 are parsed, 101 are refused. */
	GString *s = nested_rfc822(100);
	imap_fetch_msg *m = load(s->str, s->len);
	GByteArray *out = g_byte_array_new();
	imap_fetch_atts atts;
	assert_int_equal(imap_fetch_atts_parse((const uint8_t *)"BODYSTRUCTURE", 13, &atts,
					       &error), 0);
	bool unknown;
	assert_int_equal(imap_fetch_msg_item(m, &atts.atts[0], out, &unknown, &error), 0);
	imap_fetch_atts_clear(&atts);
	g_byte_array_unref(out);
	imap_fetch_msg_free(&m);
	g_string_free(s, TRUE);

	s = nested_rfc822(101);
	GBytes *b = g_bytes_new(s->str, s->len);
	error = NULL;
	assert_null(imap_fetch_msg_new(b, &error));
	assert_non_null(error);
	assert_non_null(strstr(error, "deeply"));
	g_bytes_unref(b);
	g_string_free(s, TRUE);

	/* Nested multiparts count the same. */
	s = g_string_new(NULL);
	for (unsigned i = 0; i < 101; i++)
		g_string_append_printf(s, "Content-Type: multipart/mixed; boundary=x%ux\r\n\r\n--x%ux\r\n",
				       i, i);
	b = g_bytes_new(s->str, s->len);
	error = NULL;
	assert_null(imap_fetch_msg_new(b, &error));
	assert_non_null(strstr(error, "deeply"));
	g_bytes_unref(b);
	g_string_free(s, TRUE);

	/* 9999 parts and the root are parsed; one more is refused. */
	for (unsigned n = 9999; n <= 10000; n++) {
		s = g_string_new("Content-Type: multipart/mixed; boundary=p\r\n\r\n");
		for (unsigned i = 0; i < n; i++)
			g_string_append(s, "--p\r\n\r\nx\r\n");
		g_string_append(s, "--p--\r\n");
		b = g_bytes_new(s->str, s->len);
		error = NULL;
		m = imap_fetch_msg_new(b, &error);
		if (n == 9999) {
			assert_non_null(m);
			check_parse("BODY[9999]", "SECTION [9999|] section=9999 text=BODY[9999]\n");
			out = render(m, "(BODY.PEEK[9999] BODY.PEEK[10000])");
			assert_bytes("9999", out->data, out->len,
				     "BODY[9999] {1}\r\nx BODY[10000] {0}\r\n", 35);
			g_byte_array_unref(out);
			imap_fetch_msg_free(&m);
		} else {
			assert_null(m);
			assert_non_null(strstr(error, "too many MIME parts"));
		}
		g_bytes_unref(b);
		g_string_free(s, TRUE);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_simple_items),
		cmocka_unit_test(test_parse_macros),
		cmocka_unit_test(test_parse_other),
		cmocka_unit_test(test_parse_sections),
		cmocka_unit_test(test_parse_section_errors),
		cmocka_unit_test(test_parse_partial),
		cmocka_unit_test(test_parse_lists_and_modifiers),
		cmocka_unit_test(test_att_predicates),
		cmocka_unit_test(test_dovecot_answers),
		cmocka_unit_test(test_rfc822_items),
		cmocka_unit_test(test_lf_only),
		cmocka_unit_test(test_partial_edges),
		cmocka_unit_test(test_missing_parts),
		cmocka_unit_test(test_binary),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_unknown_cte),
		cmocka_unit_test(test_section_echo),
		cmocka_unit_test(test_header_fields),
		cmocka_unit_test(test_envelope_strings),
		cmocka_unit_test(test_empty_message),
		cmocka_unit_test(test_not_from_content),
		cmocka_unit_test(test_invalid_att),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
