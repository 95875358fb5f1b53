// The message display action: the title set per tab from the displayed
// message's headers and the key's acceptance asked from the API.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
	updateDisplayedTab, updateAllTabs, statusForMessage, messagesOf, keyInfoForHeaders, readRetry,
} from "../lib/display.js";
import { fakeMessenger, fakeFetch, api, keyEntry, BOB_FPR, CAROL_FPR } from "./fakes.mjs";

const MESSAGES = {
	1: { "x-sealpost-decryption": ["ok"], "x-sealpost-signature": [`good ${BOB_FPR} Bob <bob@example.net>`] },
	2: { "x-sealpost-decryption": ["ok"], "x-sealpost-signature": ["none"] },
	3: { "x-sealpost-decryption": ["failed (no secret key for this message)"], "x-sealpost-signature": ["none"] },
	4: { from: ["carol@example.net"], subject: ["plain"] },
	5: new Error("message not downloaded"),
};
readRetry.delaysMs = [1, 1];

const KEYS = [keyEntry(BOB_FPR, "bob@example.net", "verified"), keyEntry(CAROL_FPR, "carol@example.net", "unverified")];

test("each tab gets the title of its own message", async () => {
	const m = fakeMessenger({ messages: MESSAGES });
	const a = api(fakeFetch({ keys: KEYS }));
	await updateDisplayedTab(m, a, { id: 11 }, { id: null, messages: [{ id: 1 }] });
	await updateDisplayedTab(m, a, { id: 12 }, { id: null, messages: [{ id: 2 }] });
	await updateDisplayedTab(m, a, { id: 13 }, [{ id: 3 }]);
	await updateDisplayedTab(m, a, { id: 14 }, [{ id: 4 }]);
	assert.deepEqual(m.calls.setTitle, [
		{ tabId: 11, title: "Decrypted and signed by bob@example.net (key verified)" },
		{ tabId: 12, title: "Decrypted, not signed" },
		{ tabId: 13, title: "Could not decrypt this message (no secret key for this message)" },
		{ tabId: 14, title: "Not encrypted" },
	]);
	assert.deepEqual(m.calls.getFull.map((c) => c.id), [1, 2, 3, 4]);
});

test("the key's acceptance comes from the API", async () => {
	const m = fakeMessenger({ messages: MESSAGES });
	for (const [acceptance, title] of [
		["verified", "Decrypted and signed by bob@example.net (key verified)"],
		["unverified", "Decrypted and signed by bob@example.net (key not verified yet)"],
		["rejected", "Decrypted and signed by bob@example.net, but you rejected that key"]]) {
		const f = fakeFetch({ keys: [keyEntry(BOB_FPR, "bob@example.net", acceptance)] });
		const s = await updateDisplayedTab(m, api(f), { id: 1 }, [{ id: 1 }]);
		assert.equal(s.title, title);
		assert.equal(f.requests.length, 1);
		assert.equal(f.requests[0].path, "/api/v1/keys");
	}
	const gone = await updateDisplayedTab(m, api(fakeFetch({ keys: [] })), { id: 1 }, [{ id: 1 }]);
	assert.equal(gone.title, "Decrypted and signed by bob@example.net");
	assert.equal(gone.verification, "missing");
});

test("messages that need no key information ask nothing", async () => {
	const m = fakeMessenger({ messages: MESSAGES });
	const f = fakeFetch({ keys: KEYS });
	for (const id of [2, 3, 4])
		await updateDisplayedTab(m, api(f), { id: 1 }, [{ id }]);
	assert.equal(f.requests.length, 0);
	assert.equal(await keyInfoForHeaders(api(f), MESSAGES[2]), null);
});

test("sealpost unreachable: the title says so", async () => {
	const m = fakeMessenger({ messages: MESSAGES });
	await updateDisplayedTab(m, api(fakeFetch({ mode: "unreachable" })), { id: 5 }, [{ id: 1 }]);
	assert.deepEqual(m.calls.setTitle, [{ tabId: 5,
		title: "Decrypted and signed by bob@example.net (key not checked: sealpost is not reachable)" }]);
});

test("wrong token: the title says so", async () => {
	const m = fakeMessenger({ messages: MESSAGES });
	const s = await updateDisplayedTab(m, api(fakeFetch({ mode: "wrong-token" })), { id: 6 }, [{ id: 1 }]);
	assert.equal(m.calls.setTitle[0].title, "Decrypted and signed by bob@example.net (key not checked: the add-on's token is wrong)");
	assert.equal(s.verification, "unavailable");
	assert.match(s.details.join(" "), /token is wrong/);
});

test("not paired: statuses still shown, verification said to be unknown", async () => {
	const m = fakeMessenger({ messages: MESSAGES });
	const s = await updateDisplayedTab(m, null, { id: 7 }, [{ id: 1 }]);
	assert.equal(m.calls.setTitle[0].title, "Decrypted and signed by bob@example.net");
	assert.match(s.details.join(" "), /not paired/);
});

test("no message or several: the manifest's title comes back", async () => {
	const m = fakeMessenger({ messages: MESSAGES });
	assert.equal(await updateDisplayedTab(m, null, { id: 8 }, { id: null, messages: [{ id: 1 }, { id: 2 }] }), null);
	assert.equal(await updateDisplayedTab(m, null, { id: 8 }, { id: null, messages: [] }), null);
	assert.deepEqual(m.calls.setTitle, [{ tabId: 8, title: null }, { tabId: 8, title: null }]);
	assert.deepEqual(m.calls.getFull, []);
	assert.equal(await updateDisplayedTab(m, null, null, [{ id: 1 }]), null);
});

test("a message Thunderbird cannot read", async () => {
	const m = fakeMessenger({ messages: MESSAGES });
	const s = await statusForMessage(m, null, 5);
	assert.equal(s.title, "sealpost: this message could not be read");
	await updateDisplayedTab(m, null, { id: 9 }, [{ id: 5 }]);
	assert.equal(m.calls.setTitle[0].title, "sealpost: this message could not be read");
});

test("getFull is asked not to decrypt with Thunderbird's own OpenPGP", async () => {
	const m = fakeMessenger({ messages: MESSAGES });
	await statusForMessage(m, null, 2);
	assert.deepEqual(m.calls.getFull[0].options, { decrypt: false });
});

test("all tabs showing messages are updated", async () => {
	const m = fakeMessenger({
		messages: MESSAGES,
		tabs: [{ id: 1, type: "mail" }, { id: 2, type: "messageDisplay" }, { id: 3, type: "messageCompose" }, { id: 4, type: "mail" }],
		displayed: { 1: [{ id: 2 }], 2: [{ id: 4 }], 4: [] },
	});
	await updateAllTabs(m, null);
	assert.deepEqual(m.calls.setTitle, [
		{ tabId: 1, title: "Decrypted, not signed" },
		{ tabId: 2, title: "Not encrypted" },
		{ tabId: 4, title: null },
	]);
});

test("messagesOf takes both manifest versions' shapes", () => {
	assert.deepEqual(messagesOf([{ id: 1 }]), [{ id: 1 }]);
	assert.deepEqual(messagesOf({ id: "x", messages: [{ id: 2 }] }), [{ id: 2 }]);
	assert.deepEqual(messagesOf(undefined), []);
});

test("a Thunderbird without getFull's options is asked plainly", async () => {
	const m = fakeMessenger({ messages: MESSAGES });
	const plain = m.messages.getFull;
	m.messages.getFull = async (id, options) => {
		if (options !== undefined)
			throw new Error("Incorrect argument types for messages.getFull.");
		return plain(id);
	};
	assert.equal((await statusForMessage(m, null, 2)).title, "Decrypted, not signed");
});

test("a message not readable at once is asked again", async () => {
	const m = fakeMessenger({ messages: MESSAGES });
	const plain = m.messages.getFull;
	let fails = 3;	/* two attempts (with and without options) per try */
	m.messages.getFull = async (id, options) => {
		if (fails-- > 0)
			throw new Error(`Error reading message ${id}`);
		return plain(id, options);
	};
	assert.equal((await statusForMessage(m, null, 2)).title, "Decrypted, not signed");
});

test("a slow older update does not overwrite the newer title", async () => {
	const m = fakeMessenger({ messages: MESSAGES });
	let release;
	const gate = new Promise((r) => { release = r; });
	const slowApi = { async keys() { await gate; return []; } };
	const first = updateDisplayedTab(m, slowApi, { id: 30 }, [{ id: 1 }]);
	await updateDisplayedTab(m, slowApi, { id: 30 }, [{ id: 4 }]);
	release();
	await first;
	assert.deepEqual(m.calls.setTitle, [{ tabId: 30, title: "Not encrypted" }]);
});
