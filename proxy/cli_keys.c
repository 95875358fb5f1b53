/* cli_keys: `sealpost keys list|generate|import|export|delete|verify|reject|unlock|
 * pending|accept|refuse|locate` on the configuration's gnupg_home and STATE_DIR/sealpost.db. */
#include "cli_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli_common.h"
#include "config.h"
#include "keystore.h"
#include "keystore_db.h"
#include "keystore_discover.h"
#include "keystore_keyring.h"

/* Which options a command takes. */
enum {
	OPT_JSON = 1 << 0,
	OPT_PASS_STDIN = 1 << 1,
	OPT_NO_PASS = 1 << 2,
	OPT_FORCE = 1 << 3,
	OPT_SECRET = 1 << 4,
	OPT_ADDRESS = 1 << 5,
	OPT_YES = 1 << 6,
	OPT_NO_ARMOR = 1 << 7,
};

typedef struct {
	char *config_path;
	gboolean json, passphrase_stdin, no_passphrase, force, secret, yes, no_armor;
	char *address;
} cli_keys_opts;

/* What a command's argument is, checked before the configuration is read. */
typedef enum {
	ARG_NONE,
	ARG_FILE,	/* optional */
	ARG_ADDRESS,
	ARG_FPR,
	ARG_KEY,	/* an address or a fingerprint */
	ARG_PENDING,	/* a pending change's number or its new key's fingerprint */
} cli_keys_arg;

typedef struct {
	const char *name;
	cli_keys_arg arg;
	unsigned options;
	const char *usage;
} cli_keys_command;

static const cli_keys_command cli_keys_commands[] = {
	{ "list", ARG_NONE, OPT_JSON, "list [--json]" },
	{ "generate", ARG_ADDRESS, OPT_PASS_STDIN | OPT_NO_PASS | OPT_FORCE,
	  "generate ADDRESS [--passphrase-stdin | --no-passphrase] [--force]" },
	{ "import", ARG_FILE, OPT_SECRET | OPT_ADDRESS,
	  "import [FILE|-] [--secret] [--address ADDRESS]" },
	{ "export", ARG_KEY, OPT_SECRET | OPT_YES | OPT_NO_ARMOR | OPT_PASS_STDIN,
	  "export ADDRESS|FPR [--secret [--yes] [--passphrase-stdin]] [--no-armor]" },
	{ "delete", ARG_FPR, OPT_YES, "delete FPR [--yes]" },
	{ "verify", ARG_FPR, OPT_YES, "verify FPR [--yes]" },
	{ "reject", ARG_FPR, 0, "reject FPR" },
	{ "unlock", ARG_ADDRESS, OPT_PASS_STDIN, "unlock ADDRESS [--passphrase-stdin]" },
	{ "pending", ARG_NONE, OPT_JSON, "pending [--json]" },
	{ "accept", ARG_PENDING, OPT_YES, "accept ID|FPR [--yes]" },
	{ "refuse", ARG_PENDING, 0, "refuse ID|FPR" },
	{ "locate", ARG_ADDRESS, OPT_JSON, "locate ADDRESS [--json]" },
};

static const char cli_keys_summary[] =
	"Commands:\n"
	"  list [--json]                print every key: addresses, fingerprint, dates,\n"
	"                               usable, source, acceptance, own\n"
	"  generate ADDRESS             make an ed25519 + cv25519 key for ADDRESS that\n"
	"                               expires in 3 years\n"
	"  import [FILE|-]              import keys, armored or binary (public only\n"
	"                               unless --secret)\n"
	"  export ADDRESS|FPR           write public keys (or with --secret, a secret\n"
	"                               key) to standard output, armored\n"
	"  delete FPR                   delete a key and its secret key\n"
	"  verify FPR                   mark a key verified after comparing fingerprints\n"
	"  reject FPR                   mark a key rejected: sealpost never uses it\n"
	"  unlock ADDRESS               give gpg-agent the passphrase of ADDRESS's key\n"
	"  pending [--json]             list key changes waiting for review (a learned\n"
	"                               key that differs from one you verified)\n"
	"  accept ID|FPR                use the new key of a pending change: it becomes\n"
	"                               verified, the key it replaces rejected\n"
	"  refuse ID|FPR                drop a pending change: the new key is rejected,\n"
	"                               the old one stays\n"
	"  locate ADDRESS [--json]      look ADDRESS's key up now by WKD (and the\n"
	"                               keyserver when configured), cache or not\n"
	"\n"
	"FPR is a full fingerprint (40 hexadecimal digits, spaces allowed). The\n"
	"keyring is the configuration's gnupg_home; sources and acceptance live in\n"
	"STATE_DIR/sealpost.db. Passphrases are read from the terminal without echo,\n"
	"or from the first line of standard input with --passphrase-stdin.";

/* YYYY-MM-DD in UTC (g_free). */
static char *cli_keys_date(int64_t t)
{
	GDateTime *dt = g_date_time_new_from_unix_utc(t);
	if (dt == NULL)
		return g_strdup("?");
	char *s = g_date_time_format(dt, "%Y-%m-%d");
	g_date_time_unref(dt);
	return s != NULL ? s : g_strdup("?");
}

/* The fingerprint as people read it out: groups of four, the two halves
 * of a v4 fingerprint apart as gpg shows them (g_free). */
static char *cli_keys_grouped(const char *fpr)
{
	size_t len = strlen(fpr);
	GString *out = g_string_new("");
	for (size_t i = 0; i < len; i += 4) {
		if (i > 0)
			g_string_append(out, len == 40 && i == 20 ? "  " : " ");
		g_string_append_len(out, fpr + i, (gssize)MIN(4, len - i));
	}
	return g_string_free(out, FALSE);
}

static char *cli_keys_addresses(const keystore_keyring_key *k)
{
	return k->addresses[0] != NULL ? g_strjoinv(", ", k->addresses) : g_strdup("(no address)");
}

/* ---- the terminal ------------------------------------------------------------ */

static struct termios cli_keys_tty_saved;
static volatile sig_atomic_t cli_keys_tty_changed;

/* Echo comes back even when the user interrupts the question. */
static void cli_keys_tty_signal(int sig)
{
	if (cli_keys_tty_changed)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &cli_keys_tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* One line from fd into buf (size bytes with the NUL), a byte at a time so
 * that no stdio buffer keeps a copy of a passphrase. Returns its length
 * (a trailing CR dropped), -1 at end of input before anything, -2 when it
 * did not fit. */
static ssize_t cli_keys_read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;
	bool any = false, too_long = false;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		any = true;
		if (c == '\n')
			break;
		if (n + 1 < size)
			buf[n++] = c;
		else
			too_long = true;
		c = 0;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (!any)
		return -1;
	return too_long ? -2 : (ssize_t)n;
}

/* Asks on the terminal; the answer is not echoed when secret. */
static ssize_t cli_keys_ask(const char *prompt, bool secret, char *buf, size_t size)
{
	struct sigaction sa = { .sa_handler = cli_keys_tty_signal }, old[4];
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	bool changed = false;
	if (secret && tcgetattr(STDIN_FILENO, &cli_keys_tty_saved) == 0) {
		struct termios t = cli_keys_tty_saved;
		t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
		sigemptyset(&sa.sa_mask);
		for (size_t i = 0; i < G_N_ELEMENTS(sigs); i++)
			sigaction(sigs[i], &sa, &old[i]);
		cli_keys_tty_changed = 1;
		changed = true;
		/* Before the prompt, discarding what was typed ahead: nothing
		 * typed for this question is ever echoed. */
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
	}
	fputs(prompt, stderr);
	fflush(stderr);
	ssize_t n = cli_keys_read_line(STDIN_FILENO, buf, size);
	if (changed) {
		tcsetattr(STDIN_FILENO, TCSANOW, &cli_keys_tty_saved);
		cli_keys_tty_changed = 0;
		for (size_t i = 0; i < G_N_ELEMENTS(sigs); i++)
			sigaction(sigs[i], &old[i], NULL);
	}
	if (secret) {
		/* The newline the user typed was not echoed. */
		fputc('\n', stderr);
	}
	return n;
}

static bool cli_keys_interactive(void)
{
	return isatty(STDIN_FILENO) == 1;
}

/* "y" or "yes" to the question. */
static bool cli_keys_ask_yes(const char *question)
{
	char answer[16];
	char *prompt = g_strdup_printf("%s [y/N] ", question);
	ssize_t n = cli_keys_ask(prompt, false, answer, sizeof(answer));
	g_free(prompt);
	g_strstrip(answer);
	return n >= 0 && (g_ascii_strcasecmp(answer, "y") == 0 ||
			  g_ascii_strcasecmp(answer, "yes") == 0);
}

/* The user types the fingerprint's last 8 characters: harder to do by
 * reflex than "y". */
static bool cli_keys_ask_fingerprint(const char *what, const keystore_keyring_key *k)
{
	char *addrs = cli_keys_addresses(k);
	char *grouped = cli_keys_grouped(k->fingerprint);
	fprintf(stderr, "%s\n  %s\n  %s\n", what, grouped, addrs);
	g_free(grouped);
	g_free(addrs);
	char answer[64];
	ssize_t n = cli_keys_ask("Type the last 8 characters of its fingerprint to go on: ", false,
				 answer, sizeof(answer));
	if (n < 0)
		return false;
	char *typed = g_strdup(answer);
	/* Spaces as in the grouped form are fine. */
	char *w = typed;
	for (const char *r = answer; *r != '\0'; r++)
		if (*r != ' ')
			*w++ = *r;
	*w = '\0';
	size_t len = strlen(k->fingerprint);
	bool ok = strlen(typed) == 8 && g_ascii_strcasecmp(typed, k->fingerprint + len - 8) == 0;
	g_free(typed);
	return ok;
}

/* ---- passphrases --------------------------------------------------------------- */

typedef enum {
	CLI_PP_NONE,	/* nowhere to ask */
	CLI_PP_TTY,
	CLI_PP_STDIN,
} cli_keys_pp_from;

typedef struct {
	cli_keys_pp_from from;
	char *secret;		/* sodium_malloc; NULL until read */
	const char *why;	/* why none was given */
} cli_keys_pp;

static void cli_keys_pp_clear(cli_keys_pp *p)
{
	if (p->secret != NULL)
		sodium_free(p->secret);	/* wipes it */
	p->secret = NULL;
}

/* Reads the passphrase into p->secret; -1 with p->why. */
static int cli_keys_pp_read(cli_keys_pp *p, const char *prompt)
{
	p->secret = sodium_malloc(KEYSTORE_PASSPHRASE_MAX + 1);
	if (p->secret == NULL) {
		p->why = "out of secure memory";
		return -1;
	}
	ssize_t n;
	if (p->from == CLI_PP_STDIN) {
		n = cli_keys_read_line(STDIN_FILENO, p->secret, KEYSTORE_PASSPHRASE_MAX + 1);
	} else if (p->from == CLI_PP_TTY) {
		n = cli_keys_ask(prompt, true, p->secret, KEYSTORE_PASSPHRASE_MAX + 1);
	} else {
		p->why = "the key has a passphrase and there is no terminal to ask for it "
			 "(give --passphrase-stdin)";
		cli_keys_pp_clear(p);
		return -1;
	}
	if (n == -2)
		p->why = "the passphrase is longer than 1023 bytes";
	else if (n < 0)
		p->why = "no passphrase given";
	if (n < 0) {
		cli_keys_pp_clear(p);
		return -1;
	}
	return 0;
}

/* keystore_passphrase_fn: reads the passphrase when gpg first wants it,
 * and gives the same one if gpg asks again for another subkey. */
static int cli_keys_pp_fn(void *ctx, const char *hint, bool again, char *buf, size_t size)
{
	cli_keys_pp *p = ctx;
	if (again) {
		/* gpg found it wrong: asking again would only repeat it. */
		p->why = NULL;
		return -1;
	}
	if (p->secret == NULL) {
		char *printable = cli_printable(hint != NULL ? hint : "the key");
		char *prompt = g_strdup_printf("Passphrase for %s: ", printable);
		int r = cli_keys_pp_read(p, prompt);
		g_free(prompt);
		g_free(printable);
		if (r < 0)
			return -1;
		if (p->secret[0] == '\0') {
			p->why = "empty passphrase";
			cli_keys_pp_clear(p);
			return -1;
		}
	}
	size_t len = strlen(p->secret);
	if (len >= size)
		return -1;
	memcpy(buf, p->secret, len + 1);
	return 0;
}

static cli_keys_pp_from cli_keys_pp_source(const cli_keys_opts *o)
{
	if (o->passphrase_stdin)
		return CLI_PP_STDIN;
	return cli_keys_interactive() ? CLI_PP_TTY : CLI_PP_NONE;
}

/* ---- commands ------------------------------------------------------------------ */

void cli_keys_json_key(JsonBuilder *b, const keystore_keyring_key *k)
{
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "fingerprint");
	json_builder_add_string_value(b, k->fingerprint);
	json_builder_set_member_name(b, "addresses");
	json_builder_begin_array(b);
	for (size_t i = 0; k->addresses[i] != NULL; i++) {
		char *a = g_utf8_make_valid(k->addresses[i], -1);
		json_builder_add_string_value(b, a);
		g_free(a);
	}
	json_builder_end_array(b);
	char *created = cli_keys_date(k->created);
	json_builder_set_member_name(b, "created");
	json_builder_add_string_value(b, created);
	g_free(created);
	json_builder_set_member_name(b, "expires");
	if (k->expires != 0) {
		char *expires = cli_keys_date(k->expires);
		json_builder_add_string_value(b, expires);
		g_free(expires);
	} else {
		json_builder_add_null_value(b);
	}
	json_builder_set_member_name(b, "usable");
	json_builder_add_boolean_value(b, k->unusable == NULL);
	json_builder_set_member_name(b, "unusable_reason");
	if (k->unusable != NULL)
		json_builder_add_string_value(b, k->unusable);
	else
		json_builder_add_null_value(b);
	json_builder_set_member_name(b, "source");
	json_builder_add_string_value(b, keystore_key_source_name(k->source));
	json_builder_set_member_name(b, "acceptance");
	json_builder_add_string_value(b, keystore_acceptance_name(k->acceptance));
	json_builder_set_member_name(b, "own");
	json_builder_add_boolean_value(b, k->own);
	json_builder_end_object(b);
}

/* Two lines per key: fingerprint and addresses, then what sealpost
 * makes of it. */
static void cli_keys_text_key(GString *out, const keystore_keyring_key *k)
{
	char *addrs = cli_keys_addresses(k);
	char *created = cli_keys_date(k->created);
	char *expires = k->expires != 0 ? cli_keys_date(k->expires) : g_strdup("never");
	g_string_append_printf(out, "%s  %s\n    %s%s%s%s, %s, %s, created %s, expires %s\n",
			       k->fingerprint, addrs, k->own ? "own, " : "",
			       k->unusable == NULL ? "usable" : "unusable (",
			       k->unusable == NULL ? "" : k->unusable,
			       k->unusable == NULL ? "" : ")",
			       keystore_key_source_name(k->source),
			       keystore_acceptance_name(k->acceptance), created, expires);
	g_free(expires);
	g_free(created);
	g_free(addrs);
}

static int cli_keys_list(keystore_keyring *kr, const cli_keys_opts *o)
{
	keystore_keyring_key *keys;
	size_t n;
	const char *error;
	if (keystore_keyring_list(kr, NULL, &keys, &n, &error) < 0) {
		fprintf(stderr, "sealpost keys list: %s\n", error);
		return CLI_EXIT_RUNTIME;
	}
	if (o->json) {
		JsonBuilder *b = json_builder_new();
		json_builder_begin_array(b);
		for (size_t i = 0; i < n; i++)
			cli_keys_json_key(b, &keys[i]);
		json_builder_end_array(b);
		cli_print_json(b);
	} else {
		GString *out = g_string_new("");
		for (size_t i = 0; i < n; i++)
			cli_keys_text_key(out, &keys[i]);
		fputs(out->str, stdout);
		g_string_free(out, TRUE);
	}
	keystore_keyring_keys_free(&keys, n);
	return CLI_EXIT_OK;
}

static int cli_keys_generate(keystore_keyring *kr, const cli_keys_opts *o, const char *address)
{
	cli_keys_pp pp = { .from = cli_keys_pp_source(o) };
	bool with_passphrase = !o->no_passphrase;
	if (with_passphrase && pp.from == CLI_PP_NONE) {
		fprintf(stderr, "sealpost keys generate: no terminal to ask for a passphrase; give "
			"--passphrase-stdin or --no-passphrase\n");
		return CLI_EXIT_USAGE;
	}
	if (with_passphrase && pp.from == CLI_PP_STDIN) {
		if (cli_keys_pp_read(&pp, NULL) < 0) {
			fprintf(stderr, "sealpost keys generate: %s\n", pp.why);
			return CLI_EXIT_RUNTIME;
		}
		if (pp.secret[0] == '\0') {
			fprintf(stderr, "sealpost keys generate: empty passphrase on standard input; "
				"give --no-passphrase for a key without one\n");
			cli_keys_pp_clear(&pp);
			return CLI_EXIT_RUNTIME;
		}
	} else if (with_passphrase) {
		char *again = sodium_malloc(KEYSTORE_PASSPHRASE_MAX + 1);
		if (again == NULL || cli_keys_pp_read(&pp, "Passphrase for the new key "
						      "(empty for none): ") < 0 ||
		    (pp.secret[0] != '\0' &&
		     cli_keys_ask("Repeat the passphrase: ", true, again,
				  KEYSTORE_PASSPHRASE_MAX + 1) < 0)) {
			fprintf(stderr, "sealpost keys generate: %s\n",
				pp.why != NULL ? pp.why : "no passphrase given");
			cli_keys_pp_clear(&pp);
			if (again != NULL)
				sodium_free(again);
			return CLI_EXIT_RUNTIME;
		}
		bool same = pp.secret[0] == '\0' || strcmp(pp.secret, again) == 0;
		sodium_free(again);
		if (!same) {
			fprintf(stderr, "sealpost keys generate: the passphrases differ; no key "
				"generated\n");
			cli_keys_pp_clear(&pp);
			return CLI_EXIT_RUNTIME;
		}
		if (pp.secret[0] == '\0') {
			fprintf(stderr, "No passphrase: the secret key is stored unprotected.\n");
			with_passphrase = false;
			cli_keys_pp_clear(&pp);
		}
	}
	const keystore_passphrase passphrase = { .fn = cli_keys_pp_fn, .ctx = &pp };
	keystore_keyring_key k;
	const char *error;
	int ret = keystore_keyring_generate(kr, address, with_passphrase ? &passphrase : NULL,
					    o->force, &k, &error);
	cli_keys_pp_clear(&pp);
	if (ret < 0) {
		fprintf(stderr, "sealpost keys generate: %s\n", error);
		return CLI_EXIT_RUNTIME;
	}
	char *expires = k.expires != 0 ? cli_keys_date(k.expires) : g_strdup("never");
	printf("%s  %s  expires %s, %s\n", k.fingerprint, address, expires,
	       with_passphrase ? "protected by a passphrase" : "no passphrase");
	g_free(expires);
	keystore_keyring_key_clear(&k);
	return CLI_EXIT_OK;
}

/* Reads the whole input into sodium memory (it may be a secret key): at
 * most KEYSTORE_IMPORT_MAX bytes, one more to tell that it was longer. */
static char *cli_keys_read_input(const char *path, size_t *len_r, int *exit_r)
{
	bool from_stdin = path == NULL || strcmp(path, "-") == 0;
	const char *name = from_stdin ? "standard input" : path;
	int fd = STDIN_FILENO;
	if (from_stdin && cli_keys_interactive()) {
		fprintf(stderr, "sealpost keys import: no FILE given and standard input is a "
			"terminal; give FILE, or pipe the key in\n");
		*exit_r = CLI_EXIT_USAGE;
		return NULL;
	}
	*exit_r = CLI_EXIT_RUNTIME;
	if (!from_stdin) {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (fd < 0) {
			char *p = cli_printable(path);
			fprintf(stderr, "sealpost keys import: cannot open %s: %s\n", p, strerror(errno));
			g_free(p);
			return NULL;
		}
	}
	char *buf = sodium_malloc(KEYSTORE_IMPORT_MAX + 1);
	size_t len = 0;
	int err = buf == NULL ? ENOMEM : 0;
	while (err == 0 && len <= KEYSTORE_IMPORT_MAX) {
		ssize_t n = read(fd, buf + len, KEYSTORE_IMPORT_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			err = errno;
		else if (n == 0)
			break;
		else
			len += (size_t)n;
	}
	if (!from_stdin)
		close(fd);
	char *p = cli_printable(name);
	if (err != 0) {
		fprintf(stderr, "sealpost keys import: cannot read %s: %s\n", p, strerror(err));
	} else if (len > KEYSTORE_IMPORT_MAX) {
		fprintf(stderr, "sealpost keys import: %s is larger than 1 MiB; no key is that "
			"large; nothing imported\n", p);
		err = EFBIG;
	}
	g_free(p);
	if (err != 0) {
		if (buf != NULL)
			sodium_free(buf);
		return NULL;
	}
	*len_r = len;
	return buf;
}

static int cli_keys_import(keystore_keyring *kr, const cli_keys_opts *o, const char *path)
{
	int code;
	size_t len = 0;
	char *buf = cli_keys_read_input(path, &len, &code);
	if (buf == NULL)
		return code;
	const keystore_import_options opt = { .secret = o->secret, .address = o->address };
	keystore_keyring_key *keys;
	size_t n;
	const char *error;
	int ret = keystore_keyring_import(kr, buf, len, &opt, &keys, &n, &error);
	sodium_free(buf);
	if (ret < 0) {
		fprintf(stderr, "sealpost keys import: %s\n", error);
		return CLI_EXIT_RUNTIME;
	}
	for (size_t i = 0; i < n; i++) {
		char *addrs = cli_keys_addresses(&keys[i]);
		printf("%s  %s  imported%s, %s\n", keys[i].fingerprint, addrs,
		       keys[i].own ? " with its secret key" : "",
		       keystore_acceptance_name(keys[i].acceptance));
		g_free(addrs);
	}
	keystore_keyring_keys_free(&keys, n);
	return CLI_EXIT_OK;
}

static int cli_keys_export(keystore_keyring *kr, const cli_keys_opts *o, const char *what)
{
	if (o->no_armor && isatty(STDOUT_FILENO) == 1) {
		fprintf(stderr, "sealpost keys export: refusing to write binary key data to a "
			"terminal; redirect it or leave out --no-armor\n");
		return CLI_EXIT_USAGE;
	}
	if (o->secret && !o->yes && !cli_keys_interactive()) {
		fprintf(stderr, "sealpost keys export: --secret asks for confirmation on a terminal; "
			"give --yes to skip it\n");
		return CLI_EXIT_USAGE;
	}
	keystore_keyring_key *keys;
	size_t n;
	const char *error;
	if (keystore_keyring_list(kr, what, &keys, &n, &error) < 0) {
		char *p = cli_printable(what);
		fprintf(stderr, "sealpost keys export: %s: %s\n", p, error);
		g_free(p);
		return CLI_EXIT_RUNTIME;
	}
	GPtrArray *fprs = g_ptr_array_new();
	for (size_t i = 0; i < n; i++)
		if (!o->secret || keys[i].own)
			g_ptr_array_add(fprs, keys[i].fingerprint);
	int ret = CLI_EXIT_OK;
	char *p = cli_printable(what);
	if (fprs->len == 0) {
		fprintf(stderr, "sealpost keys export: no %skey for %s\n", o->secret ? "secret " : "", p);
		ret = CLI_EXIT_RUNTIME;
	} else if (o->secret && fprs->len > 1) {
		GString *list = g_string_new("");
		for (guint i = 0; i < fprs->len; i++)
			g_string_append_printf(list, "%s%s", i > 0 ? ", " : "",
					       (const char *)g_ptr_array_index(fprs, i));
		fprintf(stderr, "sealpost keys export: %s has several secret keys (%s); give the "
			"fingerprint of one\n", p, list->str);
		g_string_free(list, TRUE);
		ret = CLI_EXIT_RUNTIME;
	}
	if (ret == CLI_EXIT_OK && o->secret && !o->yes) {
		const keystore_keyring_key *k = NULL;
		for (size_t i = 0; i < n && k == NULL; i++)
			if (keys[i].own)
				k = &keys[i];
		if (!cli_keys_ask_fingerprint("This writes the SECRET key; whoever holds it can read "
					      "your mail and sign as you:", k)) {
			fprintf(stderr, "sealpost keys export: not confirmed; nothing exported\n");
			ret = CLI_EXIT_RUNTIME;
		}
	}
	if (ret == CLI_EXIT_OK) {
		cli_keys_pp pp = { .from = cli_keys_pp_source(o) };
		const keystore_passphrase passphrase = { .fn = cli_keys_pp_fn, .ctx = &pp };
		g_ptr_array_add(fprs, NULL);
		fflush(stdout);
		if (keystore_keyring_export(kr, (const char *const *)fprs->pdata, o->secret,
					    !o->no_armor, &passphrase, STDOUT_FILENO, &error) < 0) {
			fprintf(stderr, "sealpost keys export: %s%s%s\n", error,
				pp.why != NULL ? ": " : "", pp.why != NULL ? pp.why : "");
			ret = CLI_EXIT_RUNTIME;
		}
		cli_keys_pp_clear(&pp);
	}
	g_free(p);
	g_ptr_array_free(fprs, TRUE);
	keystore_keyring_keys_free(&keys, n);
	return ret;
}

/* The key a FPR argument names, with an error for anything else. */
static int cli_keys_by_fpr(keystore_keyring *kr, const char *cmd, const char *text,
			   keystore_keyring_key *k_r)
{
	char fpr[65];
	const char *error;
	keystore_keyring_key *keys;
	size_t n;
	if (keystore_fingerprint_normalise(text, fpr, sizeof(fpr), &error) < 0) {
		char *p = cli_printable(text);
		fprintf(stderr, "sealpost keys %s: invalid FPR '%s': %s\n", cmd, p, error);
		g_free(p);
		return CLI_EXIT_USAGE;
	}
	if (keystore_keyring_list(kr, fpr, &keys, &n, &error) < 0) {
		fprintf(stderr, "sealpost keys %s: %s\n", cmd, error);
		return CLI_EXIT_RUNTIME;
	}
	if (n != 1 || strcmp(keys[0].fingerprint, fpr) != 0) {
		fprintf(stderr, "sealpost keys %s: no key %s in the keyring%s\n", cmd, fpr,
			n > 0 ? " (that is a subkey's fingerprint; give the primary key's)" : "");
		keystore_keyring_keys_free(&keys, n);
		return CLI_EXIT_RUNTIME;
	}
	*k_r = keys[0];
	g_free(keys);
	return CLI_EXIT_OK;
}

static int cli_keys_delete(keystore_keyring *kr, const cli_keys_opts *o, const char *text)
{
	keystore_keyring_key k;
	int ret = cli_keys_by_fpr(kr, "delete", text, &k);
	if (ret != CLI_EXIT_OK)
		return ret;
	if (k.own && !o->yes) {
		if (!cli_keys_interactive()) {
			fprintf(stderr, "sealpost keys delete: %s is a key of your own; deleting it asks "
				"for confirmation on a terminal; give --yes to skip it\n", k.fingerprint);
			keystore_keyring_key_clear(&k);
			return CLI_EXIT_USAGE;
		}
		if (!cli_keys_ask_fingerprint("This deletes a key of your own with its SECRET key, "
					      "for good; mail encrypted to it can no longer be read:",
					      &k)) {
			fprintf(stderr, "sealpost keys delete: not confirmed; nothing deleted\n");
			keystore_keyring_key_clear(&k);
			return CLI_EXIT_RUNTIME;
		}
	}
	const char *error;
	if (keystore_keyring_delete(kr, k.fingerprint, &error) < 0) {
		fprintf(stderr, "sealpost keys delete: %s\n", error);
		ret = CLI_EXIT_RUNTIME;
	} else {
		printf("%s  deleted\n", k.fingerprint);
	}
	keystore_keyring_key_clear(&k);
	return ret;
}

static int cli_keys_acceptance(keystore_keyring *kr, const cli_keys_opts *o, const char *cmd,
			       const char *text, keystore_acceptance acceptance)
{
	keystore_keyring_key k;
	int ret = cli_keys_by_fpr(kr, cmd, text, &k);
	if (ret != CLI_EXIT_OK)
		return ret;
	if (acceptance == KEYSTORE_ACCEPTANCE_VERIFIED && !o->yes && !cli_keys_interactive()) {
		fprintf(stderr, "sealpost keys verify: the question needs a terminal; give "
			"--yes once you compared the fingerprint\n");
		keystore_keyring_key_clear(&k);
		return CLI_EXIT_USAGE;
	}
	if (acceptance == KEYSTORE_ACCEPTANCE_VERIFIED) {
		char *addrs = cli_keys_addresses(&k);
		char *grouped = cli_keys_grouped(k.fingerprint);
		printf("%s\n  %s\n", grouped, addrs);
		fflush(stdout);
		g_free(grouped);
		if (!o->yes) {
			char *q = g_strdup_printf("Is this exactly the fingerprint %s read out or showed "
						  "to you?", k.addresses[0] != NULL ? k.addresses[0]
										    : "the key's owner");
			bool yes = cli_keys_ask_yes(q);
			g_free(q);
			if (!yes) {
				fprintf(stderr, "sealpost keys verify: not confirmed; %s stays %s\n",
					k.fingerprint, keystore_acceptance_name(k.acceptance));
				ret = CLI_EXIT_RUNTIME;
			}
		}
		g_free(addrs);
	}
	const char *error;
	if (ret == CLI_EXIT_OK &&
	    keystore_keyring_set_acceptance(kr, k.fingerprint, acceptance, &error) < 0) {
		fprintf(stderr, "sealpost keys %s: %s\n", cmd, error);
		ret = CLI_EXIT_RUNTIME;
	} else if (ret == CLI_EXIT_OK) {
		printf("%s  %s\n", k.fingerprint, keystore_acceptance_name(acceptance));
	}
	keystore_keyring_key_clear(&k);
	return ret;
}

static int cli_keys_unlock(keystore_keyring *kr, const cli_keys_opts *o, const char *address)
{
	cli_keys_pp pp = { .from = cli_keys_pp_source(o) };
	const keystore_passphrase passphrase = { .fn = cli_keys_pp_fn, .ctx = &pp };
	keystore_keyring_key k;
	bool asked = false;
	const char *error;
	int ret = keystore_keyring_unlock(kr, address, &passphrase, &k, &asked, &error);
	cli_keys_pp_clear(&pp);
	if (ret < 0) {
		fprintf(stderr, "sealpost keys unlock: %s%s%s\n", error,
			pp.why != NULL ? ": " : "", pp.why != NULL ? pp.why : "");
		return CLI_EXIT_RUNTIME;
	}
	if (asked)
		printf("%s  %s  unlocked\n", k.fingerprint, address);
	else
		printf("%s  %s  has no passphrase; nothing to unlock\n", k.fingerprint, address);
	keystore_keyring_key_clear(&k);
	return CLI_EXIT_OK;
}

/* ---- pending key changes --------------------------------------------------------- */

/* A pending change's number: digits only, > 0. */
bool cli_keys_pending_id(const char *text, int64_t *id_r)
{
	if (text == NULL || text[0] == '\0' || strlen(text) > 18)
		return false;
	for (const char *p = text; *p != '\0'; p++)
		if (!g_ascii_isdigit(*p))
			return false;
	/* 40 or 64 digits would be a fingerprint; 18 cannot be. */
	int64_t id = g_ascii_strtoll(text, NULL, 10);
	if (id <= 0)
		return false;
	if (id_r != NULL)
		*id_r = id;
	return true;
}

typedef struct {
	keystore_keyring *kr;
	bool json;
	JsonBuilder *b;
	GString *out;
} cli_keys_pending_ctx;

void cli_keys_json_pending(JsonBuilder *b, keystore_keyring *kr, const keystore_pending_key *p)
{
	keystore_keyring_key k;
	const char *error;
	bool readable = keystore_keyring_inspect(kr, p->keydata, p->keydata_len, &k, &error) == 0;
	char *received = cli_keys_date(p->created);
	char *addr = g_utf8_make_valid(p->addr, -1);
	char *account = g_utf8_make_valid(p->account, -1);
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "id");
	json_builder_add_int_value(b, p->id);
	json_builder_set_member_name(b, "account");
	json_builder_add_string_value(b, account);
	json_builder_set_member_name(b, "address");
	json_builder_add_string_value(b, addr);
	json_builder_set_member_name(b, "source");
	json_builder_add_string_value(b, keystore_key_source_name(p->source));
	json_builder_set_member_name(b, "received");
	json_builder_add_string_value(b, received);
	json_builder_set_member_name(b, "old_fingerprint");
	json_builder_add_string_value(b, p->old_fingerprint);
	json_builder_set_member_name(b, "new_fingerprint");
	json_builder_add_string_value(b, p->new_fingerprint);
	json_builder_set_member_name(b, "new_key");
	if (readable)
		cli_keys_json_key(b, &k);
	else
		json_builder_add_null_value(b);
	json_builder_end_object(b);
	if (readable)
		keystore_keyring_key_clear(&k);
	g_free(account);
	g_free(addr);
	g_free(received);
}

static int cli_keys_pending_one(void *ctx_, const keystore_pending_key *p)
{
	cli_keys_pending_ctx *ctx = ctx_;
	if (ctx->json) {
		cli_keys_json_pending(ctx->b, ctx->kr, p);
		return 0;
	}
	keystore_keyring_key k;
	const char *error;
	bool readable = keystore_keyring_inspect(ctx->kr, p->keydata, p->keydata_len, &k,
						 &error) == 0;
	char *received = cli_keys_date(p->created);
	char *addr = g_utf8_make_valid(p->addr, -1);
	char *account = g_utf8_make_valid(p->account, -1);
	/* Autocrypt changes replace a verified key; discovered ones may
	 * replace any usable key, so say which. */
	keystore_keyring_key *old = NULL;
	size_t n_old = 0;
	const char *old_state = "no longer in the keyring";
	if (keystore_keyring_list(ctx->kr, p->old_fingerprint, &old, &n_old, &error) == 0 &&
	    n_old == 1)
		old_state = keystore_acceptance_name(old[0].acceptance);
	g_string_append_printf(ctx->out, "%" G_GINT64_FORMAT "  %s  learned by %s on %s"
			       "%s%s%s\n    old %s (%s)\n    new %s",
			       p->id, addr, keystore_key_source_name(p->source), received,
			       account[0] != '\0' ? " (account " : "", account,
			       account[0] != '\0' ? ")" : "", p->old_fingerprint, old_state,
			       p->new_fingerprint);
	keystore_keyring_keys_free(&old, n_old);
	if (readable) {
		char *created = cli_keys_date(k.created);
		char *addrs = cli_keys_addresses(&k);
		g_string_append_printf(ctx->out, " %s, created %s%s%s\n", addrs, created,
				       k.unusable != NULL ? ", unusable: " : "",
				       k.unusable != NULL ? k.unusable : "");
		g_free(addrs);
		g_free(created);
		keystore_keyring_key_clear(&k);
	} else {
		g_string_append_printf(ctx->out, " (unreadable: %s)\n", error);
	}
	g_free(account);
	g_free(addr);
	g_free(received);
	return 0;
}

static int cli_keys_pending(keystore_keyring *kr, keystore_db *db, const cli_keys_opts *o)
{
	cli_keys_pending_ctx ctx = { .kr = kr, .json = o->json };
	if (o->json) {
		ctx.b = json_builder_new();
		json_builder_begin_array(ctx.b);
	} else {
		ctx.out = g_string_new("");
	}
	const char *error;
	int ret = keystore_pending_list(db, cli_keys_pending_one, &ctx, &error);
	if (ret < 0)
		fprintf(stderr, "sealpost keys pending: %s\n", error);
	if (o->json) {
		json_builder_end_array(ctx.b);
		if (ret == 0)
			cli_print_json(ctx.b);
		else
			g_object_unref(ctx.b);
	} else {
		if (ret == 0)
			fputs(ctx.out->len > 0 ? ctx.out->str : "no pending key changes\n", stdout);
		g_string_free(ctx.out, TRUE);
	}
	return ret < 0 ? CLI_EXIT_RUNTIME : CLI_EXIT_OK;
}

/* accept or refuse. */
static int cli_keys_decide(keystore_keyring *kr, keystore_db *db, const cli_keys_opts *o,
			   const char *cmd, const char *text)
{
	bool accept = strcmp(cmd, "accept") == 0;
	int64_t id = 0;
	bool by_id = cli_keys_pending_id(text, &id);
	keystore_pending_key p;
	bool found;
	const char *error;
	if (keystore_pending_get(db, by_id ? id : 0, by_id ? NULL : text, &p, &found, &error) < 0) {
		fprintf(stderr, "sealpost keys %s: %s\n", cmd, error);
		return CLI_EXIT_RUNTIME;
	}
	if (!found) {
		char *pr = cli_printable(text);
		fprintf(stderr, "sealpost keys %s: no pending key change %s (see sealpost keys "
			"pending)\n", cmd, pr);
		g_free(pr);
		return CLI_EXIT_RUNTIME;
	}
	int ret = CLI_EXIT_OK;
	char *addr = cli_printable(p.addr);
	if (accept && !o->yes && !cli_keys_interactive()) {
		fprintf(stderr, "sealpost keys accept: the question needs a terminal; give --yes "
			"once you checked the new key with %s\n", addr);
		ret = CLI_EXIT_USAGE;
	} else if (accept && !o->yes) {
		char *grouped = cli_keys_grouped(p.new_fingerprint);
		printf("new key for %s:\n  %s\nit replaces the key %s\n", addr, grouped,
		       p.old_fingerprint);
		fflush(stdout);
		g_free(grouped);
		char *q = g_strdup_printf("Did %s confirm this new fingerprint to you?", addr);
		if (!cli_keys_ask_yes(q)) {
			fprintf(stderr, "sealpost keys accept: not confirmed; the change stays "
				"pending\n");
			ret = CLI_EXIT_RUNTIME;
		}
		g_free(q);
	}
	if (ret == CLI_EXIT_OK && accept) {
		if (keystore_keyring_pending_accept(kr, &p, NULL, &error) < 0) {
			fprintf(stderr, "sealpost keys accept: %s\n", error);
			ret = CLI_EXIT_RUNTIME;
		} else {
			printf("%s  accepted for %s: verified and used from now on; %s rejected\n",
			       p.new_fingerprint, addr, p.old_fingerprint);
		}
	} else if (ret == CLI_EXIT_OK) {
		if (keystore_keyring_pending_refuse(kr, &p, &error) < 0) {
			fprintf(stderr, "sealpost keys refuse: %s\n", error);
			ret = CLI_EXIT_RUNTIME;
		} else {
			printf("%s  refused for %s: rejected; %s stays in use\n", p.new_fingerprint,
			       addr, p.old_fingerprint);
		}
	}
	g_free(addr);
	keystore_pending_key_clear(&p);
	return ret;
}

/* ---- key discovery ------------------------------------------------------------ */

/* `keys locate`: a lookup now, whatever the cache says. With key_discovery
 * off, the user's explicit request still asks WKD (and the keyserver when
 * one is configured). */
static int cli_keys_locate(keystore_keyring *kr, keystore_db *db, const char *gnupg_home,
			   const keystore_discover_config *cfg, const cli_keys_opts *o,
			   const char *address)
{
	keystore_discover_config dc = *cfg;
	if (dc.methods == 0)
		dc.methods = KEYSTORE_DISCOVER_WKD |
			(dc.keyserver != NULL ? KEYSTORE_DISCOVER_KEYSERVER : 0);
	const char *error;
	keystore_discover *d = keystore_discover_new(&dc, gnupg_home, db, &error);
	if (d == NULL) {
		fprintf(stderr, "sealpost keys locate: %s\n", error);
		return CLI_EXIT_RUNTIME;
	}
	keystore_discover_result res;
	keystore_discover_lookup(d, address, true, false, &res);
	keystore_discover_free(&d);
	bool found = res.fate == KEYSTORE_DISCOVER_IMPORTED || res.fate == KEYSTORE_DISCOVER_KNOWN ||
		res.fate == KEYSTORE_DISCOVER_PENDING || res.fate == KEYSTORE_DISCOVER_REJECTED;
	keystore_keyring_key k = { 0 };
	bool have_key = false;
	keystore_keyring_key *keys = NULL;
	size_t n = 0;
	if (found && res.fate != KEYSTORE_DISCOVER_PENDING &&
	    keystore_keyring_list(kr, res.fingerprint, &keys, &n, &error) == 0 && n == 1) {
		k = keys[0];
		have_key = true;
	}
	char *addr = cli_printable(address);
	if (o->json) {
		JsonBuilder *b = json_builder_new();
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "address");
		json_builder_add_string_value(b, address);
		json_builder_set_member_name(b, "result");
		json_builder_add_string_value(b, keystore_discover_fate_name(res.fate));
		json_builder_set_member_name(b, "method");
		if (found)
			json_builder_add_string_value(b, keystore_key_source_name(res.method));
		else
			json_builder_add_null_value(b);
		json_builder_set_member_name(b, "fingerprint");
		if (res.fingerprint[0] != '\0')
			json_builder_add_string_value(b, res.fingerprint);
		else
			json_builder_add_null_value(b);
		json_builder_set_member_name(b, "pending_id");
		if (res.fate == KEYSTORE_DISCOVER_PENDING)
			json_builder_add_int_value(b, res.pending_id);
		else
			json_builder_add_null_value(b);
		json_builder_set_member_name(b, "detail");
		json_builder_add_string_value(b, res.why);
		json_builder_set_member_name(b, "key");
		if (have_key)
			cli_keys_json_key(b, &k);
		else
			json_builder_add_null_value(b);
		json_builder_end_object(b);
		cli_print_json(b);
	} else if (res.fate == KEYSTORE_DISCOVER_PENDING) {
		printf("%s  found for %s by %s: it differs from the key in use, so it waits as "
		       "pending change %" G_GINT64_FORMAT " (sealpost keys pending; accept or "
		       "refuse it)\n", res.fingerprint, addr, keystore_key_source_name(res.method),
		       res.pending_id);
	} else if (found) {
		printf("%s  found for %s by %s: %s%s\n", res.fingerprint, addr,
		       keystore_key_source_name(res.method),
		       res.fate == KEYSTORE_DISCOVER_IMPORTED ? "imported, unverified"
		       : res.fate == KEYSTORE_DISCOVER_KNOWN ? "already in the keyring"
		       : "rejected before; not used",
		       have_key && k.unusable != NULL ? " (unusable)" : "");
	} else {
		char *why = cli_printable(res.why);
		fprintf(stderr, "sealpost keys locate: %s: %s: %s\n", addr,
			res.fate == KEYSTORE_DISCOVER_NOT_FOUND ? "no key found" : "lookup failed", why);
		g_free(why);
	}
	g_free(addr);
	keystore_keyring_keys_free(&keys, n);
	return found ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
}

/* ---- main ---------------------------------------------------------------------- */

static const struct {
	unsigned bit;
	const char *name;
} cli_keys_option_names[] = {
	{ OPT_JSON, "--json" }, { OPT_PASS_STDIN, "--passphrase-stdin" },
	{ OPT_NO_PASS, "--no-passphrase" }, { OPT_FORCE, "--force" },
	{ OPT_SECRET, "--secret" }, { OPT_ADDRESS, "--address" }, { OPT_YES, "--yes" },
	{ OPT_NO_ARMOR, "--no-armor" },
};

/* Checks the command line before anything is read: a usage error is
 * reported as such even when the configuration is broken too. */
static const cli_keys_command *cli_keys_check_args(int argc, char **argv, const cli_keys_opts *o)
{
	const cli_keys_command *c = NULL;
	for (size_t i = 0; i < G_N_ELEMENTS(cli_keys_commands) && c == NULL; i++)
		if (strcmp(argv[1], cli_keys_commands[i].name) == 0)
			c = &cli_keys_commands[i];
	if (c == NULL) {
		char *p = cli_printable(argv[1]);
		fprintf(stderr, "sealpost keys: unknown command '%s': expected list, generate, import, "
			"export, delete, verify, reject, unlock, pending, accept, refuse or locate\n", p);
		g_free(p);
		return NULL;
	}
	int nargs = argc - 2;
	int min_args = c->arg == ARG_NONE || c->arg == ARG_FILE ? 0 : 1;
	int max_args = c->arg == ARG_NONE ? 0 : 1;
	if (nargs < min_args || nargs > max_args) {
		fprintf(stderr, "sealpost keys %s: usage: sealpost keys %s [--config FILE]\n",
			c->name, c->usage);
		return NULL;
	}
	unsigned given = (o->json ? OPT_JSON : 0) | (o->passphrase_stdin ? OPT_PASS_STDIN : 0) |
			 (o->no_passphrase ? OPT_NO_PASS : 0) | (o->force ? OPT_FORCE : 0) |
			 (o->secret ? OPT_SECRET : 0) | (o->address != NULL ? OPT_ADDRESS : 0) |
			 (o->yes ? OPT_YES : 0) | (o->no_armor ? OPT_NO_ARMOR : 0);
	for (size_t i = 0; i < G_N_ELEMENTS(cli_keys_option_names); i++) {
		if ((given & cli_keys_option_names[i].bit) && !(c->options & cli_keys_option_names[i].bit)) {
			fprintf(stderr, "sealpost keys %s: %s does not apply to %s\n", c->name,
				cli_keys_option_names[i].name, c->name);
			return NULL;
		}
	}
	if (o->passphrase_stdin && o->no_passphrase) {
		fprintf(stderr, "sealpost keys %s: --passphrase-stdin and --no-passphrase exclude "
			"each other\n", c->name);
		return NULL;
	}
	if (o->passphrase_stdin && strcmp(c->name, "export") == 0 && !o->secret) {
		fprintf(stderr, "sealpost keys export: --passphrase-stdin applies to --secret only\n");
		return NULL;
	}
	const char *why;
	char norm[321];
	if (c->arg == ARG_FPR &&
	    keystore_fingerprint_normalise(argv[2], norm, sizeof(norm), &why) < 0) {
		char *p = cli_printable(argv[2]);
		fprintf(stderr, "sealpost keys %s: invalid FPR '%s': %s\n", c->name, p, why);
		g_free(p);
		return NULL;
	}
	if (c->arg == ARG_PENDING && !cli_keys_pending_id(argv[2], NULL) &&
	    keystore_fingerprint_normalise(argv[2], norm, sizeof(norm), &why) < 0) {
		char *p = cli_printable(argv[2]);
		fprintf(stderr, "sealpost keys %s: invalid ID|FPR '%s': expected the number "
			"`sealpost keys pending` shows or the new key's fingerprint\n", c->name, p);
		g_free(p);
		return NULL;
	}
	const char *address = c->arg == ARG_ADDRESS ? argv[2] : o->address;
	if (address != NULL &&
	    (keystore_policy_target_normalise(address, norm, sizeof(norm), &why) < 0 ||
	     (address[0] == '@' && (why = "no local part (expected user@domain)") != NULL))) {
		char *p = cli_printable(address);
		fprintf(stderr, "sealpost keys %s: invalid ADDRESS '%s': %s\n", c->name, p, why);
		g_free(p);
		return NULL;
	}
	return c;
}

int cli_keys_main(int argc, char **argv)
{
	cli_keys_opts o = { 0 };
	GOptionEntry entries[] = {
		{ "config", 'c', 0, G_OPTION_ARG_FILENAME, &o.config_path,
		  "Configuration file (default: ~/.config/sealpost/sealpost.conf)", "FILE" },
		{ "json", 0, 0, G_OPTION_ARG_NONE, &o.json,
		  "list, pending: print a JSON array; locate: a JSON object", NULL },
		{ "passphrase-stdin", 0, 0, G_OPTION_ARG_NONE, &o.passphrase_stdin,
		  "generate, unlock, export --secret: read the passphrase from the first line of "
		  "standard input", NULL },
		{ "no-passphrase", 0, 0, G_OPTION_ARG_NONE, &o.no_passphrase,
		  "generate: store the secret key without a passphrase", NULL },
		{ "force", 0, 0, G_OPTION_ARG_NONE, &o.force,
		  "generate: even when ADDRESS already has a usable key of its own", NULL },
		{ "secret", 0, 0, G_OPTION_ARG_NONE, &o.secret,
		  "import: allow secret keys; export: the secret key", NULL },
		{ "address", 0, 0, G_OPTION_ARG_STRING, &o.address,
		  "import: every key must have a user ID with this e-mail address", "ADDRESS" },
		{ "yes", 'y', 0, G_OPTION_ARG_NONE, &o.yes,
		  "export --secret, delete, verify, accept: do not ask for confirmation", NULL },
		{ "no-armor", 0, 0, G_OPTION_ARG_NONE, &o.no_armor,
		  "export: binary OpenPGP instead of ASCII armor", NULL },
		G_OPTION_ENTRY_NULL
	};
	GOptionContext *ctx = g_option_context_new("COMMAND [ARGUMENT] - manage OpenPGP keys");
	g_option_context_add_main_entries(ctx, entries, NULL);
	g_option_context_set_summary(ctx, cli_keys_summary);
	int ret = CLI_EXIT_USAGE;
	if (!cli_parse("keys", ctx, &argc, &argv))
		goto out;
	cli_drop_dashdash(&argc, argv);
	if (argc < 2) {
		fprintf(stderr, "sealpost keys: expected list, generate, import, export, delete, "
			"verify, reject, unlock, pending, accept, refuse or locate (sealpost keys "
			"--help)\n");
		goto out;
	}
	const cli_keys_command *c = cli_keys_check_args(argc, argv, &o);
	if (c == NULL)
		goto out;

	config *cfg = cli_load_config("keys", o.config_path, &ret);
	if (cfg == NULL)
		goto out;
	const char *error;
	ret = CLI_EXIT_RUNTIME;
	keystore_db *db = keystore_db_open(cfg->state_dir, &error);
	if (db == NULL) {
		fprintf(stderr, "sealpost keys: %s\n", error);
		config_free(&cfg);
		goto out;
	}
	keystore_keyring *kr = NULL;
	if (keystore_init(cfg->gnupg_home, &error) < 0 ||
	    (kr = keystore_keyring_open(cfg->gnupg_home, db, &error)) == NULL) {
		fprintf(stderr, "sealpost keys: %s\n", error);
		keystore_db_close(&db);
		config_free(&cfg);
		goto out;
	}
	keystore_discover_config discovery = cfg->discovery;
	discovery.keyserver = g_strdup(cfg->discovery.keyserver);
	char *gnupg_home = g_strdup(cfg->gnupg_home);
	config_free(&cfg);

	const char *arg = argc > 2 ? argv[2] : NULL;
	if (strcmp(c->name, "list") == 0)
		ret = cli_keys_list(kr, &o);
	else if (strcmp(c->name, "generate") == 0)
		ret = cli_keys_generate(kr, &o, arg);
	else if (strcmp(c->name, "import") == 0)
		ret = cli_keys_import(kr, &o, arg);
	else if (strcmp(c->name, "export") == 0)
		ret = cli_keys_export(kr, &o, arg);
	else if (strcmp(c->name, "delete") == 0)
		ret = cli_keys_delete(kr, &o, arg);
	else if (strcmp(c->name, "verify") == 0)
		ret = cli_keys_acceptance(kr, &o, "verify", arg, KEYSTORE_ACCEPTANCE_VERIFIED);
	else if (strcmp(c->name, "reject") == 0)
		ret = cli_keys_acceptance(kr, &o, "reject", arg, KEYSTORE_ACCEPTANCE_REJECTED);
	else if (strcmp(c->name, "pending") == 0)
		ret = cli_keys_pending(kr, db, &o);
	else if (strcmp(c->name, "accept") == 0 || strcmp(c->name, "refuse") == 0)
		ret = cli_keys_decide(kr, db, &o, c->name, arg);
	else if (strcmp(c->name, "locate") == 0)
		ret = cli_keys_locate(kr, db, gnupg_home, &discovery, &o, arg);
	else
		ret = cli_keys_unlock(kr, &o, arg);
	g_free(discovery.keyserver);
	g_free(gnupg_home);
	keystore_keyring_close(&kr);
	keystore_db_close(&db);
	if (fflush(stdout) != 0 && ret == CLI_EXIT_OK) {
		fprintf(stderr, "sealpost keys: cannot write the output\n");
		ret = CLI_EXIT_RUNTIME;
	}
out:
	g_free(o.config_path);
	g_free(o.address);
	return ret;
}
