// The compose button's badge and title kept by the background per compose
// tab (all encrypted, some plain, refused, unreachable, wrong token, not
// paired), the light poll (only when the recipients changed, stopped when
// the tab closes) and the check before sending (cancels only a message
// sealpost would refuse, and only when it could be asked).

import { test } from "node:test";
import assert from "node:assert/strict";
import { createComposeWatch, badgeFor, recipientsKey, BADGES, BADGE_TEXT_COLOR } from "../lib/watch.js";
import { planMessage } from "../lib/compose.js";
import { fakeMessenger, fakeFetch, api, recipient } from "./fakes.mjs";

const ACCOUNTS = [
	{ name: "work", address: "alice@example.org", policy: "opportunistic", sign: false, policy_header: true },
];

const KEYS = {
	"bob@example.net": recipient("bob@example.net", true),
	"carol@example.net": recipient("carol@example.net", true),
	"dave@example.net": recipient("dave@example.net", true),
};

function setup({ details = {}, fetchOptions = {}, token, paired = true, tabIds = [7], options = {} } = {}) {
	const compose = {};
	for (const id of tabIds)
		compose[id] = { identityId: "id1", to: [], cc: [], bcc: [], customHeaders: [], ...details };
	const m = fakeMessenger({ compose, identities: { id1: { id: "id1", email: "alice@example.org" },
		other: { id: "other", email: "alice@elsewhere.example" } } });
	const f = fakeFetch({ accounts: ACCOUNTS, ...fetchOptions });
	const clock = { t: 1000 };
	const timers = { started: [], cleared: [] };
	const w = createComposeWatch(m, async () => paired ? api(f, token) : null, {
		now: () => clock.t,
		setInterval: (fn, ms) => { const id = { fn, ms }; timers.started.push(id); return id; },
		clearInterval: (id) => { timers.cleared.push(id); },
		...options,
	});
	const checks = () => f.requests.filter((q) => q.path === "/api/v1/check-recipients").length;
	return { m, f, w, clock, timers, checks };
}

const last = (list) => list[list.length - 1];

/* What the compose button of tabId shows now. */
function shown(m, tabId = 7) {
	const of = (list) => last(list.filter((c) => c.tabId === tabId));
	const color = of(m.calls.badgeColor);
	return { text: of(m.calls.badgeText).text, title: of(m.calls.composeTitle).title, color: color ? color.color : null };
}

test("all recipients have keys: ok, green, encrypted for all", async () => {
	const { m, w, checks } = setup({ details: { to: ["Bob <bob@example.net>", "carol@example.net"], cc: ["dave@example.net"] },
		fetchOptions: { recipients: KEYS } });
	await w.track(7);
	assert.equal(checks(), 1);
	assert.deepEqual(shown(m), { text: "ok", color: BADGES.encrypt.color,
		title: "sealpost: will be encrypted for all 3 recipients" });
	assert.deepEqual(last(m.calls.badgeTextColor), { tabId: 7, color: BADGE_TEXT_COLOR });
	const one = setup({ details: { to: ["bob@example.net"] }, fetchOptions: { recipients: KEYS } });
	await one.w.track(7);
	assert.equal(shown(one.m).title, "sealpost: will be encrypted for bob@example.net");
});

test("a recipient without a key: off, sent unencrypted, named", async () => {
	const { m, w } = setup({ details: { to: ["bob@example.net", "Carol <carol@example.org>"] },
		fetchOptions: { recipients: KEYS } });
	await w.track(7);
	assert.deepEqual(shown(m), { text: "off", color: BADGES.plain.color,
		title: "sealpost: carol@example.org has no key \u2014 will be sent unencrypted" });
	const two = setup({ details: { to: ["x@example.org", "y@example.org", "z@example.org"] } });
	await two.w.track(7);
	assert.equal(shown(two.m).title, "sealpost: x@example.org and 2 others have no key \u2014 will be sent unencrypted");
});

test("a Bcc recipient without a key gets a plain copy of their own", async () => {
	const { m, w } = setup({ details: { to: ["bob@example.net"], bcc: ["eve@example.org"] }, fetchOptions: { recipients: KEYS } });
	await w.track(7);
	assert.deepEqual(shown(m), { text: "off", color: BADGES.plain.color,
		title: "sealpost: eve@example.org has no key \u2014 will be sent unencrypted to 1 of 2 recipients" });
});

test("refused: a recipient needing encryption has no key", async () => {
	const recipients = { ...KEYS, "bob@example.org": recipient("bob@example.org", false, "require") };
	const { m, w } = setup({ details: { to: ["bob@example.org", "carol@example.net"] }, fetchOptions: { recipients } });
	await w.track(7);
	assert.deepEqual(shown(m), { text: "!", color: BADGES.refuse.color,
		title: "sealpost: will be refused: bob@example.org needs encryption and has no key" });
});

test("refused: one recipient's require covers the shared copy", async () => {
	const recipients = { "bob@example.org": recipient("bob@example.org", true, "require") };
	const { m, w } = setup({ details: { to: ["bob@example.org"], cc: ["carol@example.net"] }, fetchOptions: { recipients } });
	await w.track(7);
	assert.equal(shown(m).text, "!");
	assert.equal(shown(m).title, "sealpost: will be refused: bob@example.org needs encryption, and " +
		"carol@example.net has no key (To and Cc get one shared copy)");
	/* In Bcc, carol gets her own copy: no refusal. */
	const bcc = setup({ details: { to: ["bob@example.org"], bcc: ["carol@example.net"] }, fetchOptions: { recipients } });
	await bcc.w.track(7);
	assert.equal(shown(bcc.m).text, "off");
});

test("the message's own choice is counted, and said", async () => {
	const always = setup({ details: { to: ["x@example.org"], customHeaders: [{ name: "X-Sealpost-Encrypt", value: "require" }] } });
	await always.w.track(7);
	assert.deepEqual(shown(always.m), { text: "!", color: BADGES.refuse.color,
		title: "sealpost: will be refused: you chose to always encrypt, and x@example.org has no key " +
			"(this message: always encrypt)" });
	const never = setup({ details: { to: ["bob@example.net"], customHeaders: [{ name: "X-Sealpost-Encrypt", value: "never" }] },
		fetchOptions: { recipients: KEYS } });
	await never.w.track(7);
	assert.deepEqual(shown(never.m), { text: "off", color: BADGES.plain.color,
		title: "sealpost: will be sent unencrypted, as you chose (this message: do not encrypt)" });
	const ignored = setup({ details: { to: ["x@example.org"], customHeaders: [{ name: "X-Sealpost-Encrypt", value: "require" }] },
		fetchOptions: { accounts: [{ ...ACCOUNTS[0], policy_header: false }] } });
	await ignored.w.track(7);
	assert.equal(shown(ignored.m).text, "off");
	assert.match(shown(ignored.m).title, /your choice for this message is ignored/);
});

test("Autocrypt's say under opportunistic, not under require", async () => {
	const discouraged = { ...recipient("carol@example.net", true, "opportunistic", "plain"), autocrypt: "discourage" };
	const { m, w } = setup({ details: { to: ["carol@example.net"] }, fetchOptions: { recipients: { "carol@example.net": discouraged } } });
	await w.track(7);
	assert.deepEqual(shown(m), { text: "off", color: BADGES.plain.color,
		title: "sealpost: Autocrypt advises against encrypting to carol@example.net \u2014 will be sent unencrypted" });
	const plan = planMessage({ recipients: [discouraged] }, "require", true);
	assert.equal(plan.verdict, "encrypt");
	assert.equal(planMessage({ recipients: [discouraged] }, "opportunistic", true).verdict, "plain");
});

test("sealpost unreachable, wrong token, not paired, no recipients, keys not checkable", async () => {
	const down = setup({ details: { to: ["bob@example.net"] }, fetchOptions: { mode: "unreachable" } });
	await down.w.track(7);
	assert.deepEqual(shown(down.m), { text: "?", color: BADGES.unknown.color,
		title: "sealpost: not reachable \u2014 the recipients' keys are not checked" });

	const wrong = setup({ details: { to: ["bob@example.net"] }, token: "0".repeat(64) });
	await wrong.w.track(7);
	assert.deepEqual(shown(wrong.m), { text: "?", color: BADGES.unknown.color,
		title: "sealpost: the add-on's token is wrong \u2014 the recipients' keys are not checked (run \"sealpost pair\" again)" });

	const unpaired = setup({ details: { to: ["bob@example.net"] }, paired: false });
	await unpaired.w.track(7);
	assert.equal(shown(unpaired.m).text, "?");
	assert.match(shown(unpaired.m).title, /^sealpost: not paired/);
	assert.equal(unpaired.f.requests.length, 0);

	const empty = setup({});
	await empty.w.track(7);
	assert.deepEqual(shown(empty.m), { text: "", color: null, title: "sealpost: encryption as the rules say" });
	assert.equal(empty.f.requests.length, 0);

	const temp = setup({ details: { to: ["bob@example.net"] },
		fetchOptions: { recipients: { "bob@example.net": recipient("bob@example.net", false, "opportunistic", "tempfail") } } });
	await temp.w.track(7);
	assert.equal(shown(temp.m).text, "?");
	assert.match(shown(temp.m).title, /cannot check the keys right now/);
});

test("an identity that is not a sealpost account is said in the title", async () => {
	const { m, w } = setup({ details: { identityId: "other", to: ["bob@example.net"] }, fetchOptions: { recipients: KEYS } });
	await w.track(7);
	assert.equal(shown(m).text, "ok");
	assert.match(shown(m).title, /if this identity sends through sealpost/);
});

test("the poll asks the API only when the recipients changed", async () => {
	const { m, w, checks, clock, timers } = setup({ details: { to: ["bob@example.net"] }, fetchOptions: { recipients: KEYS } });
	await w.track(7);
	assert.equal(checks(), 1);
	assert.equal(timers.started.length, 1);
	assert.equal(timers.started[0].ms, 3000);
	const reads = m.calls.getComposeDetails.length;
	for (let i = 0; i < 3; i++) {
		clock.t += 3000;
		await w.poll();
	}
	assert.equal(checks(), 1, "unchanged recipients: not asked again");
	assert.equal(m.calls.getComposeDetails.length, reads + 3, "but looked at on every round");
	const titles = m.calls.composeTitle.length;

	m.composeState[7].cc = ["carol@example.org"];
	await w.poll();
	assert.equal(checks(), 2);
	assert.equal(shown(m).text, "off");
	assert.ok(m.calls.composeTitle.length > titles);
	await w.poll();
	assert.equal(checks(), 2);

	/* The choice and the identity count as changes too. */
	m.composeState[7].customHeaders = [{ name: "X-Sealpost-Encrypt", value: "never" }];
	await w.poll();
	assert.equal(checks(), 3);

	/* The timer's own callback polls. */
	m.composeState[7].cc = [];
	timers.started[0].fn();
	await new Promise((r) => setTimeout(r, 20));
	assert.equal(checks(), 4);

	/* A good answer is asked again after a long while all the same. */
	clock.t += 120000;
	await w.poll();
	assert.equal(checks(), 5);

	/* An event forces a check. */
	await w.refresh(7, { force: true });
	assert.equal(checks(), 6);
	/* Identical badges are not set again. */
	const texts = m.calls.badgeText.length;
	await w.refresh(7, { force: true });
	assert.equal(m.calls.badgeText.length, texts);
});

test("a failed check is retried after a while even when nothing changed", async () => {
	const f = fakeFetch({ accounts: ACCOUNTS, mode: "unreachable", recipients: KEYS });
	const { m, w, clock } = setup({ details: { to: ["bob@example.net"] } });
	const w2 = createComposeWatch(m, async () => api(f), { now: () => clock.t,
		setInterval: () => ({}), clearInterval: () => {} });
	await w2.track(7);
	assert.equal(shown(m).text, "?");
	const asked = () => f.requests.length;
	const n = asked();
	clock.t += 3000;
	await w2.poll();
	assert.equal(asked(), n);
	clock.t += 30000;
	await w2.poll();
	assert.ok(asked() > n);
	w.stop();
});

test("the poll stops when the compose tab closes", async () => {
	const { m, w, checks, timers } = setup({ details: { to: ["bob@example.net"] }, tabIds: [7, 8], fetchOptions: { recipients: KEYS } });
	await w.track(7);
	await w.track(8);
	assert.equal(timers.started.length, 1, "one timer for all tabs");
	assert.equal(checks(), 2);
	w.untrack(7);
	assert.equal(w.polling, true);
	m.calls.getComposeDetails.length = 0;
	await w.poll();
	assert.deepEqual(m.calls.getComposeDetails, [8]);
	w.untrack(8);
	assert.equal(w.polling, false);
	assert.deepEqual(timers.cleared, [timers.started[0]]);
	m.calls.getComposeDetails.length = 0;
	await w.poll();
	assert.deepEqual(m.calls.getComposeDetails, []);

	/* A tab that vanished without onRemoved is dropped on the next round. */
	await w.track(7);
	assert.equal(w.polling, true);
	delete m.composeState[7];
	await w.poll();
	assert.equal(w.tabs.size, 0);
	assert.equal(w.polling, false);
});

test("a check finishing after its tab closed shows nothing", async () => {
	let release;
	const gate = new Promise((r) => { release = r; });
	const { m, w } = setup({ details: { to: ["bob@example.net"] }, fetchOptions: { recipients: KEYS } });
	const slow = createComposeWatch(m, async () => { await gate; return api(fakeFetch({ accounts: ACCOUNTS, recipients: KEYS })); },
		{ setInterval: () => ({}), clearInterval: () => {} });
	const p = slow.track(7);
	slow.untrack(7);
	release();
	await p;
	assert.equal(m.calls.badgeText.length, 0);
	w.stop();
});

test("onBeforeSend cancels a message sealpost would refuse, when paired", async () => {
	const recipients = { "bob@example.org": recipient("bob@example.org", false, "require") };
	const { m, w, checks } = setup({ details: { to: ["bob@example.org"] }, fetchOptions: { recipients } });
	const details = structuredClone(m.composeState[7]);
	const r = await w.beforeSend({ id: 7, windowId: 3 }, details);
	assert.deepEqual(r, { cancel: true });
	assert.equal(checks(), 1);
	assert.deepEqual(shown(m), { text: "!", color: BADGES.refuse.color,
		title: "sealpost stopped sending: bob@example.org needs encryption and has no key" });
	assert.deepEqual(m.calls.openPopup, [{ windowId: 3 }]);
	/* The poll does not ask again for what the send check saw. */
	await w.poll();
	assert.equal(checks(), 1);
	/* Choosing "never" lets it go. */
	details.customHeaders = [{ name: "X-Sealpost-Encrypt", value: "never" }];
	assert.deepEqual(await w.beforeSend({ id: 7, windowId: 3 }, details), {});
	assert.equal(shown(m).text, "off");
	w.stop();
});

test("onBeforeSend lets everything else go", async () => {
	const send = async (opts, details = { to: ["bob@example.org"] }) => {
		const s = setup({ details, ...opts });
		const r = await s.w.beforeSend({ id: 7, windowId: 1 }, structuredClone(s.m.composeState[7]));
		s.w.stop();
		return { r, s };
	};
	const refusing = { "bob@example.org": recipient("bob@example.org", false, "require") };
	/* Would be encrypted, or sent unencrypted: no reason to stop it. */
	assert.deepEqual((await send({ fetchOptions: { recipients: KEYS } }, { to: ["bob@example.net"] })).r, {});
	assert.deepEqual((await send({}, { to: ["x@example.org"] })).r, {});
	/* sealpost cannot be asked: never blocked (sealpost still refuses itself). */
	const down = await send({ fetchOptions: { mode: "unreachable", recipients: refusing } });
	assert.deepEqual(down.r, {});
	assert.equal(shown(down.s.m).text, "?");
	assert.deepEqual((await send({ token: "0".repeat(64), fetchOptions: { recipients: refusing } })).r, {});
	assert.deepEqual((await send({ fetchOptions: { mode: "forbidden", recipients: refusing } })).r, {});
	const unpaired = await send({ paired: false, fetchOptions: { recipients: refusing } });
	assert.deepEqual(unpaired.r, {});
	assert.equal(unpaired.s.f.requests.length, 0);
	/* Keys not checkable right now: sealpost answers with a temporary error itself. */
	assert.deepEqual((await send({ fetchOptions: { recipients: {
		"bob@example.org": recipient("bob@example.org", false, "require", "tempfail") } } })).r, {});
	/* An identity that is not a sealpost account may not go through it. */
	const other = await send({ fetchOptions: { recipients: refusing } }, { identityId: "other", to: ["bob@example.org"] });
	assert.deepEqual(other.r, {});
	assert.equal(other.s.m.calls.openPopup.length, 0);
	/* No popup to open (older Thunderbird): still cancelled. */
	const s = setup({ details: { to: ["bob@example.org"] }, fetchOptions: { recipients: refusing } });
	delete s.m.composeAction.openPopup;
	assert.deepEqual(await s.w.beforeSend({ id: 7 }, structuredClone(s.m.composeState[7])), { cancel: true });
	s.w.stop();
});

test("onBeforeSend does not wait for a hanging sealpost", async () => {
	const { m, w } = setup({ details: { to: ["bob@example.org"] }, fetchOptions: { mode: "hang" },
		options: { sendTimeoutMs: 30 } });
	const started = Date.now();
	const r = await w.beforeSend({ id: 7 }, structuredClone(m.composeState[7]));
	assert.deepEqual(r, {});
	assert.ok(Date.now() - started < 2000);
	assert.equal(shown(m).text, "?");
	w.stop();
});

test("badge helpers", () => {
	assert.deepEqual(badgeFor(null), { text: "", color: null, title: "sealpost: encryption as the rules say", verdict: "empty" });
	assert.equal(badgeFor({ state: "error", kind: "server", notice: { text: "boom" } }).title,
		"sealpost: could not check the recipients' keys (boom)");
	assert.notEqual(recipientsKey({ to: ["a@b"] }), recipientsKey({ to: ["a@c"] }));
	assert.notEqual(recipientsKey({ to: ["a@b"] }), recipientsKey({ to: ["a@b"], identityId: "x" }));
	assert.equal(recipientsKey({ to: ["a@b"], body: "x" }), recipientsKey({ to: ["a@b"], body: "y" }));
	for (const b of Object.values(BADGES))
		assert.match(b.text, /^[ -~]{0,4}$/, "short ASCII");
});
