// The compose action: the chosen mode as exact custom headers, and the
// recipients check as the popup shows it (keys, a missing key, sealpost
// unreachable, a wrong token).

import { test } from "node:test";
import assert from "node:assert/strict";
import {
	headersForChoice, mergeCustomHeaders, choiceFromHeaders, applyChoice, recipientAddresses,
	summarizeRecipients, checkComposeRecipients, outcomeFor, choiceTitle, planMessage, visibleAddresses,
} from "../lib/compose.js";
import { fakeMessenger, fakeFetch, api, recipient, TOKEN } from "./fakes.mjs";

const ACCOUNTS = [
	{ name: "work", address: "alice@example.org", policy: "opportunistic", sign: false, policy_header: true },
	{ name: "home", address: "alice@home.example", policy: "opportunistic", sign: true, policy_header: true },
];

function composeMessenger(details) {
	return fakeMessenger({
		compose: { 7: { identityId: "id1", to: [], cc: [], bcc: [], customHeaders: [], ...details } },
		identities: { id1: { id: "id1", email: "Alice@Example.org" }, id2: { id: "id2", email: "alice@home.example" } },
	});
}

test("each choice gives the exact header fields", () => {
	assert.deepEqual(headersForChoice({ encrypt: "require", sign: "yes" }),
		[{ name: "X-Sealpost-Encrypt", value: "require" }, { name: "X-Sealpost-Sign", value: "yes" }]);
	assert.deepEqual(headersForChoice({ encrypt: "opportunistic", sign: "no" }),
		[{ name: "X-Sealpost-Encrypt", value: "opportunistic" }, { name: "X-Sealpost-Sign", value: "no" }]);
	assert.deepEqual(headersForChoice({ encrypt: "never", sign: "default" }),
		[{ name: "X-Sealpost-Encrypt", value: "never" }]);
	assert.deepEqual(headersForChoice({ encrypt: "default", sign: "default" }), []);
	assert.deepEqual(headersForChoice({ encrypt: "maybe", sign: "perhaps" }), []);
	assert.deepEqual(headersForChoice(null), []);
});

test("applyChoice sets exactly our headers, keeps others, replaces earlier ones", async () => {
	const m = composeMessenger({ customHeaders: [{ name: "X-Other", value: "1" }, { name: "X-Sealpost-Encrypt", value: "never" }] });
	await applyChoice(m, 7, { encrypt: "require", sign: "yes" });
	assert.deepEqual(m.calls.setComposeDetails, [{ tabId: 7, details: { customHeaders: [
		{ name: "X-Other", value: "1" },
		{ name: "X-Sealpost-Encrypt", value: "require" },
		{ name: "X-Sealpost-Sign", value: "yes" },
	] } }]);
	await applyChoice(m, 7, { encrypt: "never", sign: "no" });
	assert.deepEqual(m.calls.setComposeDetails[1].details.customHeaders, [
		{ name: "X-Other", value: "1" },
		{ name: "X-Sealpost-Encrypt", value: "never" },
		{ name: "X-Sealpost-Sign", value: "no" },
	]);
	await applyChoice(m, 7, { encrypt: "default", sign: "default" });
	assert.deepEqual(m.calls.setComposeDetails[2].details.customHeaders, [{ name: "X-Other", value: "1" }]);
	await applyChoice(m, 7, { encrypt: "opportunistic", sign: "default" });
	assert.deepEqual(m.calls.setComposeDetails[3].details.customHeaders, [
		{ name: "X-Other", value: "1" }, { name: "X-Sealpost-Encrypt", value: "opportunistic" }]);
	assert.deepEqual(m.calls.composeTitle.map((c) => c.title), ["sealpost: always encrypt, sign",
		"sealpost: do not encrypt, do not sign", "sealpost: encryption as the rules say", "sealpost: encrypt if keys allow"]);
	assert.ok(m.calls.composeTitle.every((c) => c.tabId === 7));
	assert.equal(choiceTitle({ encrypt: "default", sign: "no" }), "sealpost: do not sign");
});

test("the choice is read back from the compose window (Train-Case or not)", () => {
	assert.deepEqual(choiceFromHeaders([{ name: "X-Sealpost-Encrypt", value: "require" }, { name: "X-Sealpost-Sign", value: "yes" }]),
		{ encrypt: "require", sign: "yes" });
	assert.deepEqual(choiceFromHeaders([{ name: "x-sealpost-encrypt", value: " Never " }, { name: "X-SEALPOST-SIGN", value: "no" }]),
		{ encrypt: "never", sign: "no" });
	assert.deepEqual(choiceFromHeaders([{ name: "X-Sealpost-Encrypt", value: "bogus" }]), { encrypt: "default", sign: "default" });
	assert.deepEqual(choiceFromHeaders(undefined), { encrypt: "default", sign: "default" });
	assert.deepEqual(mergeCustomHeaders([{ name: "X-Sealpost-Sign", value: "yes" }, null, { value: "x" }], { sign: "no" }),
		[{ name: "X-Sealpost-Sign", value: "no" }]);
});

test("recipient addresses from To, Cc and Bcc", () => {
	assert.deepEqual(recipientAddresses({
		to: ["Bob <bob@example.net>", "\"Doe, Jane\" <jane@example.com>, carol@example.net"],
		cc: "Bob Again <BOB@example.net>", bcc: [{ id: "contact1", type: "contact" }, "dave@example.org"],
	}), ["bob@example.net", "jane@example.com", "carol@example.net", "dave@example.org"]);
	assert.deepEqual(recipientAddresses({}), []);
	assert.deepEqual(recipientAddresses(null), []);
});

test("all recipients have keys", async () => {
	const m = composeMessenger({ to: ["Bob <bob@example.net>"], cc: ["carol@example.net"] });
	const f = fakeFetch({ accounts: ACCOUNTS, recipients: {
		"bob@example.net": recipient("bob@example.net", true),
		"carol@example.net": recipient("carol@example.net", true),
	} });
	const r = await checkComposeRecipients(m, api(f), 7);
	assert.equal(r.state, "all-keys");
	assert.equal(r.title, "Every recipient has a usable key: the message will be encrypted.");
	assert.deepEqual(r.lines.map((l) => l.text), ["bob@example.net has a usable key.", "carol@example.net has a usable key."]);
	assert.equal(r.account, "work");
	const post = f.requests.find((q) => q.path === "/api/v1/check-recipients");
	assert.deepEqual(post.body, { addresses: ["bob@example.net", "carol@example.net"], account: "work" });
	assert.equal(post.authorization, "Bearer " + TOKEN);
});

test("a recipient lacks a key", async () => {
	const m = composeMessenger({ identityId: "id2", to: ["bob@example.net", "X <x@example.com>"] });
	const f = fakeFetch({ accounts: ACCOUNTS, recipients: { "bob@example.net": recipient("bob@example.net", true) } });
	const r = await checkComposeRecipients(m, api(f), 7);
	assert.equal(r.state, "some-lack-keys");
	/* To and Cc share one copy: bob's key alone does not encrypt it. */
	assert.equal(r.title, "One recipient lacks a usable key: the message will be sent unencrypted.");
	assert.equal(r.plan.verdict, "plain");
	assert.equal(r.lines[0].text, "bob@example.net has a usable key, but will get it unencrypted: " +
		"another recipient of the same copy lacks one.");
	assert.deepEqual(r.lines[1], { address: "x@example.com", tone: "warning",
		text: "x@example.com lacks a usable key (no key): it will be sent unencrypted." });
	assert.equal(f.requests.find((q) => q.path === "/api/v1/check-recipients").body.account, "home");
});

test("require without a key: sealpost will refuse", async () => {
	const m = composeMessenger({ to: ["x@example.com"], customHeaders: [{ name: "X-Sealpost-Encrypt", value: "require" }] });
	const f = fakeFetch({ accounts: ACCOUNTS });
	const r = await checkComposeRecipients(m, api(f), 7);
	assert.equal(r.state, "refused");
	assert.equal(r.choice.encrypt, "require");
	assert.equal(r.title, "sealpost will refuse this message: a recipient must get it encrypted but lacks a usable key.");
	assert.equal(r.lines[0].text, "x@example.com lacks a usable key (no key): encryption is required, so sealpost will refuse to send.");
	assert.equal(r.lines[0].tone, "bad");
});

test("never: keys are there but the message goes unencrypted", () => {
	const reply = { recipients: [recipient("bob@example.net", true)] };
	const r = summarizeRecipients(reply, "never", true);
	assert.equal(r.state, "all-keys");
	assert.match(r.title, /sent unencrypted/);
	assert.equal(r.lines[0].text, "bob@example.net has a usable key, but will get it unencrypted.");
	/* An account that ignores the header keeps the API's outcome. */
	assert.equal(outcomeFor(recipient("bob@example.net", true), "never", false), "encrypt");
	assert.equal(outcomeFor(recipient("x@y", false, "require"), "opportunistic", true), "plain");
	assert.equal(outcomeFor({ address: "x", valid: false }, "require", true), "invalid");
	assert.equal(summarizeRecipients({ recipients: [{ address: "nope", valid: false, error: "not an address" }] }).lines[0].text,
		"nope is not a valid address (not an address).");
	assert.equal(summarizeRecipients({ recipients: [recipient("a@b", true, "opportunistic", "tempfail")] }).state, "error");
	assert.equal(summarizeRecipients(null).state, "empty");
});

test("sealpost unreachable", async () => {
	const m = composeMessenger({ to: ["bob@example.net"] });
	const r = await checkComposeRecipients(m, api(fakeFetch({ mode: "unreachable" })), 7);
	assert.equal(r.state, "error");
	assert.equal(r.kind, "unreachable");
	assert.equal(r.title, "sealpost is not reachable");
	assert.match(r.notice.text, /sealpost does not answer at http:\/\/127.0.0.1:7587/);
});

test("wrong token", async () => {
	const m = composeMessenger({ to: ["bob@example.net"] });
	const r = await checkComposeRecipients(m, api(fakeFetch(), "0".repeat(64)), 7);
	assert.equal(r.state, "error");
	assert.equal(r.kind, "unauthorized");
	assert.equal(r.title, "The token is wrong");
	assert.match(r.notice.text, /sealpost pair/);
});

test("not paired, and no recipients", async () => {
	const m = composeMessenger({ to: ["bob@example.net"] });
	const r = await checkComposeRecipients(m, null, 7);
	assert.equal(r.state, "error");
	assert.equal(r.notice.kind, "not-paired");
	const f = fakeFetch({ accounts: ACCOUNTS });
	const e = await checkComposeRecipients(composeMessenger({}), api(f), 7);
	assert.equal(e.state, "empty");
	assert.equal(f.requests.length, 0);
});

test("an identity sealpost does not know: no account named", async () => {
	const m = composeMessenger({ identityId: "nope", to: ["bob@example.net"] });
	const f = fakeFetch({ accounts: ACCOUNTS });
	const r = await checkComposeRecipients(m, api(f), 7);
	assert.equal(r.account, null);
	assert.deepEqual(f.requests.find((q) => q.path === "/api/v1/check-recipients").body, { addresses: ["bob@example.net"] });
});

test("To and Cc share a copy: one recipient's require covers the others", () => {
	const reply = { recipients: [recipient("bob@example.org", true, "require"), recipient("carol@example.net", false)] };
	const shared = summarizeRecipients(reply, "default", true, new Set(["bob@example.org", "carol@example.net"]));
	assert.equal(shared.state, "refused");
	assert.equal(shared.title, "sealpost will refuse this message: encryption is required, and a recipient lacks a usable key.");
	assert.equal(shared.lines[1].text, "carol@example.net lacks a usable key (no key): encryption is required, so sealpost will refuse to send.");
	assert.deepEqual(shared.plan.missing.map((p) => p.address), ["carol@example.net"]);
	assert.deepEqual(shared.plan.requiredBy.map((p) => p.address), ["bob@example.org"]);
	/* carol in Bcc: her own copy, unencrypted; bob's encrypted. */
	const bcc = summarizeRecipients(reply, "default", true, new Set(["bob@example.org"]));
	assert.equal(bcc.state, "some-lack-keys");
	assert.equal(bcc.plan.verdict, "mixed");
	assert.equal(bcc.title, "One recipient lacks a usable key: the message will not be encrypted for everyone.");
	assert.deepEqual(bcc.plan.people.map((p) => p.fate), ["encrypt", "plain"]);
	/* A never rule for one Bcc recipient leaves the others alone. */
	const never = planMessage({ recipients: [recipient("bob@example.net", true), recipient("x@example.org", true, "never")] },
		"default", true, new Set(["bob@example.net"]));
	assert.equal(never.verdict, "mixed");
	assert.deepEqual(never.people.map((p) => p.why), [null, "rules"]);
});

test("visible addresses are To and Cc", async () => {
	assert.deepEqual([...visibleAddresses({ to: ["Bob <Bob@example.net>"], cc: "c@x", bcc: ["d@y"] })], ["bob@example.net", "c@x"]);
	const m = composeMessenger({ to: ["bob@example.net"], bcc: ["x@example.com"] });
	const f = fakeFetch({ accounts: ACCOUNTS, recipients: { "bob@example.net": recipient("bob@example.net", true) } });
	const r = await checkComposeRecipients(m, api(f), 7);
	assert.equal(r.plan.verdict, "mixed");
	assert.equal(r.matched, true);
});
