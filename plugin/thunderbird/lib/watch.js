// watch: the compose button's badge and title kept up to date, per compose
// tab, with sealpost's recipients check, and the check before sending that
// stops a message sealpost would refuse. messenger, the API client (through
// getApi) and the timers come in, so Node runs it against fakes.

import { checkDetails, choiceFromHeaders, choiceTitle } from "./compose.js";

/* Badge text (short ASCII) and colour per verdict. */
export const BADGES = Object.freeze({
	encrypt: { text: "ok", color: "#1b6e2a" },	/* encrypted for everyone */
	plain: { text: "off", color: "#a34f00" },	/* someone gets it unencrypted */
	refuse: { text: "!", color: "#b3261e" },	/* sealpost will refuse it */
	unknown: { text: "?", color: "#5f6368" },	/* cannot be checked now */
	none: { text: "", color: null },		/* no recipients yet */
});
export const BADGE_TEXT_COLOR = "#ffffff";

/* The message for runtime.sendMessage by which the popup says it changed
 * the choice of tabId. */
export const CHANGED_MESSAGE = "sealpost-compose-changed";

/* "a", "a and b", "a and 2 others". */
function names(people) {
	const a = people.map((p) => p.address);
	if (a.length <= 1)
		return a[0] || "a recipient";
	if (a.length === 2)
		return `${a[0]} and ${a[1]}`;
	return `${a[0]} and ${a.length - 1} others`;
}

const has = (people) => people.length === 1 ? "has" : "have";
const needs = (people) => people.length === 1 ? "needs" : "need";

/* Why some recipients get it unencrypted, e.g. "carol@example.net has no key". */
function lackingPhrase(lacking) {
	if (lacking.length > 0 && lacking.every((p) => p.why === "autocrypt"))
		return `Autocrypt advises against encrypting to ${names(lacking)}`;
	if (lacking.length > 0 && lacking.every((p) => p.why === "invalid"))
		return `${names(lacking)} ${lacking.length === 1 ? "is not a valid address" : "are not valid addresses"}`;
	return `${names(lacking)} ${has(lacking)} no key`;
}

/* Why sealpost would refuse, e.g. "bob@example.org needs encryption and has no key". */
export function refusalReason(plan) {
	const missing = plan.missing;
	if (plan.header === "require")
		return `you chose to always encrypt, and ${names(missing)} ${has(missing)} no key`;
	if (missing.every((p) => p.policy === "require"))
		return `${names(missing)} ${needs(missing)} encryption and ${has(missing)} no key`;
	const req = plan.requiredBy;
	return `${names(req)} ${needs(req)} encryption, and ${names(missing)} ${has(missing)} no key ` +
		"(To and Cc get one shared copy)";
}

const PROBLEMS = {
	"not-paired": "sealpost: not paired \u2014 the recipients' keys are not checked (pair in the add-on's settings)",
	unreachable: "sealpost: not reachable \u2014 the recipients' keys are not checked",
	unauthorized: "sealpost: the add-on's token is wrong \u2014 the recipients' keys are not checked " +
		"(run \"sealpost pair\" again)",
	forbidden: "sealpost: refused the add-on \u2014 the recipients' keys are not checked",
};

/* What is added to a title about the message's own choice. */
function choiceSuffix(result) {
	const c = result.choice;
	if (!c || (c.encrypt === "default" && c.sign === "default"))
		return "";
	if (result.honoured === false)
		return " (your choice for this message is ignored: this sealpost account does not read it)";
	return " (this message: " + choiceTitle(c).replace(/^sealpost: /, "") + ")";
}

/* The badge {text, color, title, verdict} for a recipients check result
 * (see checkDetails). */
export function badgeFor(result) {
	if (!result || result.state === "empty") {
		const choice = result && result.choice ? result.choice : { encrypt: "default", sign: "default" };
		return { ...BADGES.none, title: choiceTitle(choice), verdict: "empty" };
	}
	const plan = result.plan;
	if (result.state === "error" && (!plan || plan.verdict !== "tempfail")) {
		const title = PROBLEMS[result.kind] ||
			"sealpost: could not check the recipients' keys" + (result.notice && result.notice.text ?
				` (${result.notice.text})` : "");
		return { ...BADGES.unknown, title: title + choiceSuffix(result), verdict: "unknown" };
	}
	const total = plan.people.length;
	let badge, title;
	switch (plan.verdict) {
	case "tempfail":
		badge = BADGES.unknown;
		title = "sealpost: cannot check the keys right now \u2014 try again in a moment";
		break;
	case "refuse":
		badge = BADGES.refuse;
		title = "sealpost: will be refused: " + refusalReason(plan);
		break;
	case "encrypt":
		badge = BADGES.encrypt;
		title = total === 1 ? `sealpost: will be encrypted for ${plan.people[0].address}` :
			`sealpost: will be encrypted for all ${total} recipients`;
		break;
	case "plain":
		badge = BADGES.plain;
		if (plan.lacking.length > 0)
			title = `sealpost: ${lackingPhrase(plan.lacking)} \u2014 will be sent unencrypted`;
		else if (plan.header === "never")
			title = "sealpost: will be sent unencrypted, as you chose";
		else
			title = "sealpost: will be sent unencrypted: sealpost's rules say not to encrypt";
		break;
	default:	/* mixed: some copies encrypted, some not (Bcc) */
		badge = BADGES.plain;
		title = plan.lacking.length > 0 ?
			`sealpost: ${lackingPhrase(plan.lacking)} \u2014 will be sent unencrypted to ` +
				`${plan.plain} of ${total} recipients` :
			`sealpost: will be encrypted for ${plan.encrypted} of ${total} recipients; ` +
				"sealpost's rules say not to encrypt for the others";
		break;
	}
	if (result.matched === false)
		title += " (if this identity sends through sealpost: its address is not one of sealpost's accounts)";
	return { ...badge, title: title + choiceSuffix(result), verdict: plan.verdict };
}

/* The badge after onBeforeSend stopped a message. */
export function stoppedBadge(result) {
	return { ...BADGES.refuse, verdict: "refuse",
		title: "sealpost stopped sending: " + refusalReason(result.plan) + choiceSuffix(result) };
}

/* Shows badge on the compose button of tabId (errors, e.g. a closed tab,
 * are swallowed). */
export async function showBadge(messenger, tabId, badge) {
	const action = messenger && messenger.composeAction;
	if (!action)
		return;
	const calls = [
		() => action.setBadgeText({ tabId, text: badge.text }),
		() => action.setTitle({ tabId, title: badge.title }),
	];
	if (badge.color) {
		calls.push(() => action.setBadgeBackgroundColor({ tabId, color: badge.color }));
		if (typeof action.setBadgeTextColor === "function")
			calls.push(() => action.setBadgeTextColor({ tabId, color: BADGE_TEXT_COLOR }));
	}
	for (const call of calls) {
		try {
			await call();
		} catch (e) {
			/* the tab closed meanwhile, or an older Thunderbird */
		}
	}
}

/* What, when it changes, makes the check worth asking again: the
 * recipients, the identity and the choice of the message. */
export function recipientsKey(details) {
	const d = details || {};
	const c = choiceFromHeaders(d.customHeaders);
	return JSON.stringify([d.to ?? null, d.cc ?? null, d.bcc ?? null, d.identityId ?? null, c.encrypt, c.sign]);
}

const DEFAULTS = {
	pollMs: 3000,		/* how often open compose tabs are looked at */
	retryMs: 30000,		/* a failed check is asked again after this, changed or not */
	recheckMs: 120000,	/* a good one too (keys change meanwhile) */
	sendTimeoutMs: 10000,	/* the check before sending waits no longer */
};

/* The watcher of compose tabs: track(tabId) when a compose tab opens,
 * untrack(tabId) when it closes; refresh(tabId, {force}) on an event;
 * beforeSend(tab, details) is the compose.onBeforeSend listener. While a
 * tab is tracked, every pollMs its details are read and the API is asked
 * again only when the recipients (or identity, or choice) changed, or
 * the last answer is older than retryMs (failed) / recheckMs. */
export function createComposeWatch(messenger, getApi, options = {}) {
	const o = {
		...DEFAULTS, now: () => Date.now(),
		setInterval: (f, ms) => setInterval(f, ms), clearInterval: (t) => clearInterval(t),
		setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t),
		...options,
	};
	const tabs = new Map();
	let timer = null;

	function startTimer() {
		if (timer === null && tabs.size > 0)
			timer = o.setInterval(() => { poll().catch(() => {}); }, o.pollMs);
	}

	function stopTimer() {
		if (timer !== null && tabs.size === 0) {
			o.clearInterval(timer);
			timer = null;
		}
	}

	function entry(tabId) {
		let t = tabs.get(tabId);
		if (!t) {
			t = { key: null, checkedAt: 0, result: null, badge: null, shown: null, running: null, again: false };
			tabs.set(tabId, t);
			startTimer();
		}
		return t;
	}

	async function show(tabId, t, badge) {
		t.badge = badge;
		const k = JSON.stringify(badge);
		if (t.shown === k)
			return;
		t.shown = k;
		await showBadge(messenger, tabId, badge);
	}

	function stale(t) {
		if (!t.result)
			return true;
		const failed = t.result.state === "error";
		return o.now() - t.checkedAt >= (failed ? o.retryMs : o.recheckMs);
	}

	async function currentApi() {
		try {
			return await getApi();
		} catch (e) {
			return null;
		}
	}

	async function gone(tabId) {
		if (!messenger.tabs || typeof messenger.tabs.get !== "function")
			return false;
		try {
			await messenger.tabs.get(tabId);
			return false;
		} catch (e) {
			return true;
		}
	}

	async function refreshOnce(tabId, t, force) {
		let details;
		try {
			details = await messenger.compose.getComposeDetails(tabId);
		} catch (e) {
			/* Not ready yet, or closed without onRemoved reaching us. */
			if (await gone(tabId))
				untrack(tabId);
			return;
		}
		const key = recipientsKey(details);
		if (!force && key === t.key && !stale(t))
			return;
		const result = await checkDetails(messenger, await currentApi(), details);
		if (tabs.get(tabId) !== t)
			return;	/* closed meanwhile */
		t.key = key;
		t.checkedAt = o.now();
		t.result = result;
		await show(tabId, t, badgeFor(result));
	}

	/* Checks tabId now if its recipients changed (or force). */
	function refresh(tabId, { force = false } = {}) {
		if (typeof tabId !== "number")
			return Promise.resolve();
		const t = entry(tabId);
		if (t.running) {
			t.again = t.again || force;
			return t.running;
		}
		t.running = (async () => {
			try {
				let f = force;
				for (;;) {
					t.again = false;
					await refreshOnce(tabId, t, f);
					if (!t.again || tabs.get(tabId) !== t)
						break;
					f = true;
				}
			} catch (e) {
				console.error("sealpost: recipients check:", e);
			} finally {
				t.running = null;
			}
		})();
		return t.running;
	}

	function track(tabId) {
		return refresh(tabId, { force: !tabs.has(tabId) });
	}

	function untrack(tabId) {
		tabs.delete(tabId);
		stopTimer();
	}

	/* One round: every tracked tab, asked again only when changed. */
	async function poll() {
		await Promise.all([...tabs.keys()].map((id) => refresh(id)));
	}

	async function refreshAll({ force = false } = {}) {
		await Promise.all([...tabs.keys()].map((id) => refresh(id, { force })));
	}

	function withTimeout(promise, ms) {
		let id;
		const timeout = new Promise((resolve) => {
			id = o.setTimeout(() => resolve(null), ms);
		});
		return Promise.race([promise, timeout]).finally(() => o.clearTimeout(id));
	}

	/* compose.onBeforeSend: {cancel: true} only when paired, sealpost
	 * answered, the identity is one of its accounts and it would refuse
	 * the message; never when it cannot be asked. */
	async function beforeSend(tab, details) {
		const tabId = tab && typeof tab.id === "number" ? tab.id : null;
		const api = await currentApi();
		if (!api)
			return {};
		const result = await withTimeout(checkDetails(messenger, api, details).catch(() => null), o.sendTimeoutMs);
		const t = tabId !== null && tabs.has(tabId) ? tabs.get(tabId) : null;
		if (!result) {
			if (tabId !== null)
				await show(tabId, t || entry(tabId), { ...BADGES.unknown, verdict: "unknown",
					title: PROBLEMS.unreachable });
			return {};
		}
		const tt = tabId !== null ? t || entry(tabId) : null;
		if (tt) {
			tt.key = recipientsKey(details);
			tt.checkedAt = o.now();
			tt.result = result;
		}
		if (result.plan && result.plan.verdict === "refuse" && result.matched === true) {
			if (tt)
				await show(tabId, tt, stoppedBadge(result));
			const action = messenger.composeAction;
			if (action && typeof action.openPopup === "function") {
				const opts = tab && typeof tab.windowId === "number" ? { windowId: tab.windowId } : undefined;
				try {
					Promise.resolve(action.openPopup(opts)).catch(() => {});
				} catch (e) {
					/* no popup from here: the badge and title say it */
				}
			}
			return { cancel: true };
		}
		if (tt)
			await show(tabId, tt, badgeFor(result));
		return {};
	}

	function stop() {
		tabs.clear();
		stopTimer();
	}

	return {
		track, untrack, refresh, refreshAll, poll, beforeSend, stop,
		get tabs() { return tabs; },
		get polling() { return timer !== null; },
	};
}
