// statusFromHeaders: the sentence for every X-Sealpost-* value sealpost
// writes, and for forged or odd values (which must never throw).

import { test } from "node:test";
import assert from "node:assert/strict";
import {
	statusFromHeaders, parseSignature, parseDecryption, addressOfUserId, cleanText, keyInfoFromKeys,
	formatFingerprint, headerValues,
} from "../lib/status.js";
import { BOB_FPR } from "./fakes.mjs";

const ok = (sig, extra = {}) => ({ "x-sealpost-decryption": ["ok"], "x-sealpost-signature": [sig], ...extra });
const GOOD = `good ${BOB_FPR} Bob Example <bob@example.net>`;

test("plain message: Not encrypted", () => {
	const s = statusFromHeaders({ from: ["a@b"], subject: ["hi"] }, null);
	assert.equal(s.title, "Not encrypted");
	assert.equal(s.encryption, "plain");
	assert.equal(s.signature, null);
	assert.match(s.details.join(" "), /not encrypted/);
});

test("no headers at all, or not an object", () => {
	for (const h of [undefined, null, {}, "x", 42, []])
		assert.equal(statusFromHeaders(h, null).title, "Not encrypted");
});

test("a signature header without a decryption header is ignored", () => {
	const s = statusFromHeaders({ "x-sealpost-signature": [GOOD] }, { state: "found", acceptance: "verified" });
	assert.equal(s.title, "Not encrypted");
});

test("decrypted, good signature, key verified", () => {
	const s = statusFromHeaders(ok(GOOD), { state: "found", acceptance: "verified" });
	assert.equal(s.title, "Decrypted and signed by bob@example.net (key verified)");
	assert.equal(s.tone, "good");
	assert.equal(s.verification, "verified");
	assert.equal(s.signature.fingerprint, BOB_FPR);
	assert.equal(s.signature.userId, "Bob Example <bob@example.net>");
	assert.ok(s.details.some((l) => l.includes("F073 25FE F728 6A3B DD28 423A 32B0 44AA 1D6C C2C7")));
});

test("decrypted, good signature, key unverified / rejected / own", () => {
	assert.equal(statusFromHeaders(ok(GOOD), { state: "found", acceptance: "unverified" }).title,
		"Decrypted and signed by bob@example.net (key not verified yet)");
	const rej = statusFromHeaders(ok(GOOD), { state: "found", acceptance: "rejected" });
	assert.equal(rej.title, "Decrypted and signed by bob@example.net, but you rejected that key");
	assert.equal(rej.tone, "bad");
	const own = statusFromHeaders(ok(GOOD), { state: "found", acceptance: "verified", own: true });
	assert.match(own.details.join(" "), /your own keys/);
});

test("decrypted, good signature, not paired: said plainly", () => {
	for (const ki of [null, undefined, { state: "not-paired" }]) {
		const s = statusFromHeaders(ok(GOOD), ki);
		assert.equal(s.title, "Decrypted and signed by bob@example.net");
		assert.equal(s.verification, "not-paired");
		assert.match(s.details.join(" "), /not paired with sealpost/);
	}
});

test("decrypted, good signature, API unreachable or token wrong", () => {
	assert.equal(statusFromHeaders(ok(GOOD), { state: "error", kind: "unreachable" }).title,
		"Decrypted and signed by bob@example.net (key not checked: sealpost is not reachable)");
	assert.equal(statusFromHeaders(ok(GOOD), { state: "error", kind: "unauthorized" }).title,
		"Decrypted and signed by bob@example.net (key not checked: the add-on's token is wrong)");
	assert.equal(statusFromHeaders(ok(GOOD), { state: "error", kind: "forbidden" }).title,
		"Decrypted and signed by bob@example.net (key not checked: sealpost refused the add-on)");
	assert.equal(statusFromHeaders(ok(GOOD), { state: "missing" }).title,
		"Decrypted and signed by bob@example.net");
});

test("decrypted, not signed", () => {
	const s = statusFromHeaders(ok("none"), null);
	assert.equal(s.title, "Decrypted, not signed");
	assert.equal(s.signature.kind, "none");
	assert.equal(s.verification, null);
});

test("decrypted without a signature header reads as not signed", () => {
	assert.equal(statusFromHeaders({ "x-sealpost-decryption": ["ok"] }, null).title, "Decrypted, not signed");
});

test("mismatch: signed by a key without the From address", () => {
	const s = statusFromHeaders(ok(`mismatch ${BOB_FPR} Carol <carol@example.com>`), null);
	assert.equal(s.title, "Decrypted; the signature is from carol@example.com, not from the sender");
	assert.equal(s.tone, "warning");
	assert.doesNotMatch(s.title, /signed by/);
});

test("unknown-key, partial, bad", () => {
	assert.equal(statusFromHeaders(ok(`unknown-key ${BOB_FPR}`), null).title,
		"Decrypted; the signature could not be checked (unknown key)");
	const partial = statusFromHeaders(ok(`partial ${BOB_FPR}`), null);
	assert.equal(partial.title, "Decrypted; only part of the message is signed");
	assert.equal(partial.tone, "warning");
	const bad = statusFromHeaders(ok("bad (key revoked, expired or disabled)"), null);
	assert.equal(bad.title, "Decrypted, but the signature is bad");
	assert.equal(bad.tone, "bad");
	assert.match(bad.details.join(" "), /key revoked, expired or disabled/);
	assert.equal(statusFromHeaders(ok("bad"), null).title, "Decrypted, but the signature is bad");
	assert.equal(statusFromHeaders(ok("bad (malformed signed part)"), null).signature.why, "malformed signed part");
});

test("failed decryption, with each reason sealpost writes", () => {
	for (const reason of ["no secret key for this message", "the secret key is locked", "no integrity protection",
		"integrity check failed", "not readable OpenPGP data", "malformed PGP/MIME structure",
		"decrypted content too large", "unknown failure"]) {
		const s = statusFromHeaders({ "x-sealpost-decryption": [`failed (${reason})`], "x-sealpost-signature": ["none"] }, null);
		assert.equal(s.title, `Could not decrypt this message (${reason})`);
		assert.equal(s.tone, "bad");
		assert.equal(s.encryption, "failed");
	}
	assert.match(statusFromHeaders({ "x-sealpost-decryption": ["failed (the secret key is locked)"] }, null)
		.details.join(" "), /Unlock/);
	assert.equal(statusFromHeaders({ "x-sealpost-decryption": ["failed"] }, null).title, "Could not decrypt this message");
});

test("From mismatch is told", () => {
	const s = statusFromHeaders(ok(GOOD, { "x-sealpost-from-mismatch": ["outer Eve <eve@example.org>"] }),
		{ state: "found", acceptance: "verified" });
	assert.equal(s.title, "Decrypted and signed by bob@example.net (key verified) (sender differs from the envelope)");
	assert.equal(s.tone, "warning");
	assert.match(s.details.join(" "), /eve@example.org/);
});

test("odd spacing and case are read", () => {
	assert.equal(statusFromHeaders({ "x-sealpost-decryption": ["  OK  "], "x-sealpost-signature": [`  GOOD   ${BOB_FPR.toLowerCase()}   Bob   <bob@example.net>  `] },
		{ state: "found", acceptance: "verified" }).title, "Decrypted and signed by bob@example.net (key verified)");
	assert.equal(statusFromHeaders({ "x-sealpost-decryption": ["failed   (integrity check failed)  "] }, null).title,
		"Could not decrypt this message (integrity check failed)");
	assert.equal(statusFromHeaders({ "X-Sealpost-Decryption": ["ok"], "X-SEALPOST-SIGNATURE": ["none"] }, null).title,
		"Decrypted, not signed");
	assert.equal(statusFromHeaders({ "x-sealpost-decryption": "ok", "x-sealpost-signature": "none" }, null).title,
		"Decrypted, not signed");
});

test("unknown words never claim more than sealpost said", () => {
	const dec = statusFromHeaders({ "x-sealpost-decryption": ["okay"] }, null);
	assert.match(dec.title, /^Could not decrypt/);
	assert.equal(dec.encryption, "unreadable");
	assert.match(statusFromHeaders({ "x-sealpost-decryption": ["ok", "failed (x)"] }, null).title, /^Could not decrypt/);
	assert.match(statusFromHeaders({ "x-sealpost-decryption": [""] }, null).title, /^Could not decrypt/);
	for (const v of ["excellent", "good", "good nothex Bob <bob@x>", `good ${BOB_FPR.slice(0, 10)} x`, "none extra",
		"verified " + BOB_FPR, "", "   ", "unknown-key", "partial zz"]) {
		const s = statusFromHeaders(ok(v), { state: "found", acceptance: "verified" });
		assert.equal(s.title, "Decrypted; the signature status is unreadable", `value ${JSON.stringify(v)}`);
		assert.doesNotMatch(s.title, /signed by/);
	}
	const two = statusFromHeaders({ "x-sealpost-decryption": ["ok"], "x-sealpost-signature": [GOOD, "none"] }, null);
	assert.equal(two.title, "Decrypted; the signature status is unreadable");
});

test("good signature without a user ID, or a user ID without an address", () => {
	assert.equal(statusFromHeaders(ok(`good ${BOB_FPR}`), null).title,
		"Decrypted and signed by the key F073 25FE F728 6A3B DD28 423A 32B0 44AA 1D6C C2C7");
	assert.equal(statusFromHeaders(ok(`good ${BOB_FPR} Bob Example`), null).title,
		"Decrypted and signed by Bob Example");
	assert.equal(statusFromHeaders(ok(`good ${BOB_FPR} bob@example.net`), null).title,
		"Decrypted and signed by bob@example.net");
	assert.equal(statusFromHeaders(ok(`good ${BOB_FPR} Bob (work) bob@example.net`), null).title,
		"Decrypted and signed by bob@example.net");
});

test("a very long or hostile user ID is cut and cleaned, never thrown on", () => {
	const long = "A".repeat(5000) + " <" + "b".repeat(3000) + "@example.net>";
	const s = statusFromHeaders(ok(`good ${BOB_FPR} ${long}`), null);
	assert.ok(s.title.length < 300, `title of ${s.title.length} characters`);
	assert.match(s.title, /^Decrypted and signed by /);
	for (const line of s.details)
		assert.ok(line.length < 400);
	const ctl = statusFromHeaders(ok(`good ${BOB_FPR} Bob\u0000\r\nX-Evil: 1 <bob@example.net>`), null);
	assert.doesNotMatch(ctl.title, /[\u0000-\u001f]/);
	assert.equal(ctl.title, "Decrypted and signed by bob@example.net");
	const rtl = statusFromHeaders(ok(`good ${BOB_FPR} \u202ebob\u2028 <bob@example.net>`), null);
	assert.doesNotMatch(rtl.title, /[\u2028]/);
});

test("strange header shapes never throw", () => {
	const weird = [
		{ "x-sealpost-decryption": [null] }, { "x-sealpost-decryption": [42] }, { "x-sealpost-decryption": [{}] },
		{ "x-sealpost-decryption": ["ok"], "x-sealpost-signature": [null] },
		{ "x-sealpost-decryption": ["ok"], "x-sealpost-signature": [[GOOD]] },
		{ "x-sealpost-decryption": ["ok"], "x-sealpost-signature": [{ toString() { throw new Error("x"); } }] },
		Object.create(null), { "x-sealpost-decryption": ["failed (" + "x".repeat(10000) + ")"] },
	];
	for (const h of weird) {
		const s = statusFromHeaders(h, { state: "found", acceptance: {} });
		assert.equal(typeof s.title, "string");
		assert.match(s.title, /^(Decrypted|Could not decrypt|Not encrypted)/);
		assert.ok(s.title.length < 300);
	}
	for (const ki of [42, "x", { state: "found" }, { state: "error" }, { state: "what" }])
		assert.match(statusFromHeaders(ok(GOOD), ki).title, /^Decrypted and signed by bob@example.net/);
});

test("helpers", () => {
	assert.equal(addressOfUserId("Bob <bob@example.net>"), "bob@example.net");
	assert.equal(addressOfUserId("no address"), null);
	assert.equal(addressOfUserId(null), null);
	assert.equal(cleanText("a\u0000b\r\nc"), "a b c");
	assert.equal(Array.from(cleanText("x".repeat(500))).length, 120);
	assert.equal(formatFingerprint("abcd1234abcd1234"), "ABCD 1234 ABCD 1234");
	assert.deepEqual(headerValues({ A: ["1"], a: "2" }, "a"), ["1", "2"]);
	assert.deepEqual(parseDecryption(["failed (x)"]), { state: "failed", reason: "x" });
	assert.equal(parseSignature([`partial ${BOB_FPR}`]).kind, "partial");
	const keys = [{ fingerprint: BOB_FPR, acceptance: "verified", own: false }];
	assert.deepEqual(keyInfoFromKeys(keys, BOB_FPR.toLowerCase()), { state: "found", acceptance: "verified", own: false });
	assert.deepEqual(keyInfoFromKeys(keys, BOB_FPR.slice(-16)), { state: "found", acceptance: "verified", own: false });
	assert.deepEqual(keyInfoFromKeys(keys, "0".repeat(40)), { state: "missing" });
	assert.deepEqual(keyInfoFromKeys(null, BOB_FPR), { state: "missing" });
});

test("still encrypted, no sealpost status: not called plain", () => {
	const s = statusFromHeaders({ "content-type": ["multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=x"] }, null);
	assert.equal(s.title, "Could not decrypt: sealpost did not decrypt this message");
	assert.equal(s.encryption, "not-decrypted");
	assert.equal(statusFromHeaders({ "content-type": ["multipart/signed; boundary=x"] }, null).title, "Not encrypted");
});
