/* cli_keys: the `sealpost keys` command — list, generate, import, export,
 * delete, verify, reject and unlock the keys of sealpost's GnuPG keyring. */
#ifndef SEALPOST_CLI_KEYS_H
#define SEALPOST_CLI_KEYS_H

#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "keystore_db.h"
#include "keystore_keyring.h"

/* argv[0] is "keys". Returns the exit code of docs/cli.md: 0 done, 1 the
 * keyring or database failed or the input was refused, 2 usage, 3 the
 * configuration is invalid. */
int cli_keys_main(int argc, char **argv);

/* One key as `sealpost keys list --json` prints it (the local API too). */
void cli_keys_json_key(JsonBuilder *b, const keystore_keyring_key *k);
/* One pending key change as `sealpost keys pending --json` prints it. */
void cli_keys_json_pending(JsonBuilder *b, keystore_keyring *kr, const keystore_pending_key *p);
/* A pending change's number as the user gives it: digits only, > 0. */
bool cli_keys_pending_id(const char *text, int64_t *id_r);

#endif
