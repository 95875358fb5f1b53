/* cli_policy: the `sealpost policy` command — set, unset and list the
 * per-address and per-domain encryption rules in STATE_DIR/sealpost.db. */
#ifndef SEALPOST_CLI_POLICY_H
#define SEALPOST_CLI_POLICY_H

#include <json-glib/json-glib.h>

#include "keystore_db.h"

/* argv[0] is "policy". Returns the exit code of docs/cli.md: 0 done, 1 the
 * database failed or unset found no rule, 2 usage (a bad TARGET or POLICY
 * included), 3 the configuration is invalid. */
int cli_policy_main(int argc, char **argv);

/* Adds every rule to b as the array `sealpost policy list --json` prints
 * (the local API too). -1 with *error_r when the database failed. */
int cli_policy_json_rules(keystore_db *db, JsonBuilder *b, const char **error_r);

#endif
