// compose: the per-message choices of the compose window as the
// X-Sealpost-Encrypt / X-Sealpost-Sign header fields sealpost reads (and
// removes), and the recipients check asked from the API.

import { errorKind, noticeFor } from "./notice.js";

export const ENCRYPT_CHOICES = ["default", "require", "opportunistic", "never"];
export const SIGN_CHOICES = ["default", "yes", "no"];
export const ENCRYPT_HEADER = "X-Sealpost-Encrypt";
export const SIGN_HEADER = "X-Sealpost-Sign";

function isOurs(name) {
	const n = String(name).toLowerCase();
	return n === "x-sealpost-encrypt" || n === "x-sealpost-sign";
}

/* The header fields for a choice {encrypt, sign}; "default" adds none (the
 * rules sealpost has for the recipients and the account apply). */
export function headersForChoice(choice) {
	const out = [];
	const enc = choice && choice.encrypt;
	const sign = choice && choice.sign;
	if (enc === "require" || enc === "opportunistic" || enc === "never")
		out.push({ name: ENCRYPT_HEADER, value: enc });
	if (sign === "yes" || sign === "no")
		out.push({ name: SIGN_HEADER, value: sign });
	return out;
}

/* The compose window's custom headers with ours replaced by choice. */
export function mergeCustomHeaders(existing, choice) {
	const kept = (Array.isArray(existing) ? existing : [])
		.filter((h) => h && typeof h.name === "string" && !isOurs(h.name))
		.map((h) => ({ name: h.name, value: String(h.value) }));
	return kept.concat(headersForChoice(choice));
}

/* The choice the custom headers of a compose window hold. */
export function choiceFromHeaders(customHeaders) {
	const choice = { encrypt: "default", sign: "default" };
	for (const h of Array.isArray(customHeaders) ? customHeaders : []) {
		if (!h || typeof h.name !== "string")
			continue;
		const n = h.name.toLowerCase();
		const v = String(h.value).trim().toLowerCase();
		if (n === "x-sealpost-encrypt" && ENCRYPT_CHOICES.includes(v))
			choice.encrypt = v;
		else if (n === "x-sealpost-sign")
			choice.sign = v === "yes" || v === "true" ? "yes" : v === "no" || v === "false" ? "no" : "default";
	}
	return choice;
}

const ENCRYPT_WORDS = {
	require: "always encrypt", opportunistic: "encrypt if keys allow", never: "do not encrypt",
};
const SIGN_WORDS = { yes: "sign", no: "do not sign" };

/* The compose button's title for a choice, e.g. "sealpost: always encrypt, sign". */
export function choiceTitle(choice) {
	const words = [];
	if (choice && ENCRYPT_WORDS[choice.encrypt])
		words.push(ENCRYPT_WORDS[choice.encrypt]);
	if (choice && SIGN_WORDS[choice.sign])
		words.push(SIGN_WORDS[choice.sign]);
	return words.length === 0 ? "sealpost: encryption as the rules say" : "sealpost: " + words.join(", ");
}

/* Sets the choice on the compose window tabId (its header fields and the
 * compose button's title). Answers the headers set. */
export async function applyChoice(messenger, tabId, choice) {
	const details = await messenger.compose.getComposeDetails(tabId);
	const customHeaders = mergeCustomHeaders(details && details.customHeaders, choice);
	await messenger.compose.setComposeDetails(tabId, { customHeaders });
	if (messenger.composeAction)
		await messenger.composeAction.setTitle({ tabId, title: choiceTitle(choiceFromHeaders(customHeaders)) });
	return customHeaders;
}

/* The addresses of one recipient field value ("Bob <bob@x>", "a@x, b@y",
 * or a list of those); address book entries ({id, type}) are skipped. */
export function addressesOf(value) {
	const out = [];
	for (const item of Array.isArray(value) ? value : value == null ? [] : [value]) {
		if (typeof item !== "string")
			continue;
		/* Commas inside quoted names do not separate mailboxes. */
		const parts = [];
		let cur = "", quoted = false;
		for (const ch of item) {
			if (ch === "\"")
				quoted = !quoted;
			if (ch === "," && !quoted) {
				parts.push(cur);
				cur = "";
			} else {
				cur += ch;
			}
		}
		parts.push(cur);
		for (const p of parts) {
			const angle = /<([^<>]*)>\s*$/.exec(p);
			const addr = (angle ? angle[1] : p).trim();
			if (addr !== "")
				out.push(addr);
		}
	}
	return out;
}

/* Every distinct recipient address of compose details (To, Cc, Bcc). */
export function recipientAddresses(details) {
	const seen = new Set();
	const out = [];
	for (const field of ["to", "cc", "bcc"])
		for (const a of addressesOf(details ? details[field] : null)) {
			const k = a.toLowerCase();
			if (!seen.has(k)) {
				seen.add(k);
				out.push(a);
			}
		}
	return out;
}

const POLICIES = ["require", "opportunistic", "never"];

/* The policy sealpost's rules give a recipient of a check-recipients reply. */
function rulePolicy(r) {
	if (r && POLICIES.includes(r.policy))
		return r.policy;
	return r && r.outcome === "refuse" ? "require" : "opportunistic";
}

/* Whether Autocrypt lets sealpost encrypt to the key it brought (it has a
 * say under opportunistic only: "discourage" and "disable" say no). */
function autocryptAllows(r) {
	return !(r && (r.autocrypt === "discourage" || r.autocrypt === "disable"));
}

/* What happens to one recipient alone when the message says encrypt = mode
 * (the header beats the rules when the account honours it). */
export function outcomeFor(r, mode, honoured) {
	if (!r || r.valid === false)
		return "invalid";
	if (r.outcome === "tempfail")
		return "tempfail";
	if (!honoured || mode === "default" || !mode)
		return r.outcome;
	if (mode === "never")
		return "plain";
	if (r.key_usable && (mode === "require" || autocryptAllows(r)))
		return "encrypt";
	return mode === "require" ? "refuse" : "plain";
}

/* What sealpost will do with the message, as its outbound path decides:
 * the recipients the header names (To, Cc) share one copy, each other one
 * (Bcc) gets a copy alone; a copy is encrypted only when every recipient
 * of it has a usable key; a recipient whose policy is require makes its
 * whole copy require, one whose policy is never (and none require) makes
 * it plain; a copy that requires encryption with a key missing makes
 * sealpost refuse the whole message.
 *
 * reply: the check-recipients answer; mode: the message's encrypt choice;
 * honoured: whether the account reads X-Sealpost-*; visible: a Set of the
 * lower-case addresses of To and Cc (null: all of them).
 *
 * Answers {verdict, people, lacking, missing, requiredBy, encrypted, plain,
 * header}: verdict "empty", "encrypt" (for everyone), "plain" (for
 * everyone), "mixed", "refuse" or "tempfail"; people [{address, visible,
 * policy, fate, why, hasKey, keyUsable, problem, error, autocrypt}] with fate
 * "encrypt", "plain", "refuse" or "tempfail" and why "no-key", "autocrypt",
 * "invalid", "chosen" (the message says never), "rules" (a rule says never)
 * or null; lacking: the people whose missing key makes a copy plain;
 * missing: those whose missing key makes sealpost refuse; requiredBy: the
 * people of a refused copy whose policy is require. */
export function planMessage(reply, mode = "default", honoured = true, visible = null) {
	const list = reply && Array.isArray(reply.recipients) ? reply.recipients : [];
	const header = honoured && POLICIES.includes(mode) ? mode : null;
	const people = list.map((r0) => {
		const r = r0 && typeof r0 === "object" ? r0 : {};
		const address = String(r.address != null ? r.address : "?");
		const valid = r0 != null && r.valid !== false;
		return {
			address, valid, visible: visible instanceof Set ? visible.has(address.toLowerCase()) : true,
			policy: header || rulePolicy(r), fate: null, why: valid ? null : "invalid", hasKey: false,
			keyUsable: valid && r.key_usable === true, problem: r.key_problem || null,
			error: r.error || null, autocrypt: typeof r.autocrypt === "string" ? r.autocrypt : null,
			tempfail: valid && r.outcome === "tempfail",
		};
	});
	const groups = [];
	const shown = people.filter((p) => p.visible);
	if (shown.length > 0)
		groups.push(shown);
	for (const p of people)
		if (!p.visible)
			groups.push([p]);
	for (const g of groups) {
		const gp = g.some((p) => p.policy === "require") ? "require" :
			g.some((p) => p.policy === "never") ? "never" : "opportunistic";
		if (gp === "never") {
			for (const p of g) {
				p.fate = "plain";
				if (p.valid)
					p.why = header === "never" ? "chosen" : "rules";
			}
			continue;
		}
		for (const p of g) {
			p.hasKey = p.keyUsable && (gp !== "opportunistic" || autocryptAllows(p));
			if (p.valid && !p.hasKey)
				p.why = p.keyUsable ? "autocrypt" : "no-key";
		}
		const fate = g.some((p) => p.tempfail) ? "tempfail" : g.every((p) => p.hasKey) ? "encrypt" :
			gp === "require" ? "refuse" : "plain";
		for (const p of g)
			p.fate = fate;
	}
	const count = (f) => people.filter((p) => p.fate === f).length;
	let verdict;
	if (people.length === 0)
		verdict = "empty";
	else if (count("refuse") > 0)
		verdict = "refuse";
	else if (count("tempfail") > 0)
		verdict = "tempfail";
	else if (count("encrypt") === people.length)
		verdict = "encrypt";
	else if (count("plain") === people.length)
		verdict = "plain";
	else
		verdict = "mixed";
	const out = people.map(({ tempfail, valid, ...p }) => ({ ...p, valid }));
	return {
		verdict, people: out, header,
		lacking: out.filter((p) => p.fate === "plain" && !p.hasKey && p.why !== "chosen" && p.why !== "rules"),
		missing: out.filter((p) => p.fate === "refuse" && !p.hasKey),
		requiredBy: out.filter((p) => p.fate === "refuse" && p.policy === "require"),
		encrypted: count("encrypt"), plain: count("plain"),
	};
}

function lineFor(p) {
	const a = p.address;
	const why = p.problem ? ` (${p.problem})` : "";
	if (!p.valid)
		return { tone: "bad", text: `${a} is not a valid address` + (p.error ? ` (${p.error})` : "") + "." };
	switch (p.fate) {
	case "encrypt":
		return { tone: "good", text: `${a} has a usable key.` };
	case "tempfail":
		return { tone: "bad", text: `${a}: sealpost cannot check the keys right now; try again.` };
	case "refuse":
		if (p.hasKey)
			return { tone: "good", text: `${a} has a usable key.` };
		if (p.why === "autocrypt")
			return { tone: "bad", text: `${a} has a key only Autocrypt vouches for, and it advises ` +
				`against encrypting (${p.autocrypt}): encryption is required, so sealpost will refuse to send.` };
		return { tone: "bad", text: `${a} lacks a usable key${why}: encryption is required, so sealpost will refuse to send.` };
	default:
		if (p.why === "no-key")
			return { tone: "warning", text: `${a} lacks a usable key${why}: it will be sent unencrypted.` };
		if (p.why === "autocrypt")
			return { tone: "warning", text: `${a} has a key, but Autocrypt advises against encrypting ` +
				`to it (${p.autocrypt}): it will be sent unencrypted.` };
		if (p.keyUsable && (p.why === "chosen" || p.why === "rules"))
			return { tone: "warning", text: `${a} has a usable key, but will get it unencrypted.` };
		if (p.keyUsable)
			return { tone: "warning", text: `${a} has a usable key, but will get it unencrypted: ` +
				"another recipient of the same copy lacks one." };
		return { tone: "warning", text: `${a} lacks a usable key${why}: it will be sent unencrypted.` };
	}
}

/* The recipients check in words: {state, title, lines: [{address, text, tone}],
 * plan} (plan: see planMessage). state: "empty", "all-keys",
 * "some-lack-keys", "refused", "error". */
export function summarizeRecipients(reply, mode = "default", honoured = true, visible = null) {
	const plan = planMessage(reply, mode, honoured, visible);
	if (plan.verdict === "empty")
		return { state: "empty", title: "No recipients yet.", lines: [], plan };
	const lines = plan.people.map((p) => ({ address: p.address, ...lineFor(p) }));
	const lacking = plan.people.filter((p) => !p.keyUsable).length;
	let state, title;
	switch (plan.verdict) {
	case "refuse": {
		state = "refused";
		const n = plan.missing.length;
		const ownFault = plan.missing.every((p) => p.policy === "require");
		title = "sealpost will refuse this message: " + (ownFault ? (n === 1 ?
			"a recipient must get it encrypted but lacks a usable key." :
			`${n} recipients must get it encrypted but lack usable keys.`) :
			"encryption is required, and " + (n === 1 ? "a recipient lacks a usable key." :
				`${n} recipients lack usable keys.`));
		break;
	}
	case "tempfail":
		state = "error";
		title = "sealpost cannot check the keys right now; try again in a moment.";
		break;
	case "encrypt":
		state = "all-keys";
		title = "Every recipient has a usable key: the message will be encrypted.";
		break;
	default:
		if (lacking === 0 && plan.lacking.length === 0) {
			state = "all-keys";
			title = "Every recipient has a usable key, but the message will be sent unencrypted (encryption is off).";
		} else {
			state = "some-lack-keys";
			const n = Math.max(lacking, plan.lacking.length);
			title = `${n === 1 ? "One recipient lacks" : n + " recipients lack"} a usable key: ` +
				(plan.verdict === "plain" ? "the message will be sent unencrypted." :
					"the message will not be encrypted for everyone.");
		}
		break;
	}
	return { state, title, lines, plan };
}

/* The sealpost account name for the identity of compose details (null: let
 * sealpost take its first account). */
export async function accountForIdentity(messenger, accounts, identityId) {
	if (!identityId || !Array.isArray(accounts) || !messenger.identities)
		return null;
	let identity;
	try {
		identity = await messenger.identities.get(identityId);
	} catch (e) {
		return null;
	}
	const email = identity && typeof identity.email === "string" ? identity.email.toLowerCase() : "";
	const match = accounts.find((a) => a && typeof a.address === "string" && a.address.toLowerCase() === email);
	return match || null;
}

/* The lower-case addresses the message header names (To and Cc): sealpost
 * sends them one shared copy; each Bcc recipient gets a copy alone. */
export function visibleAddresses(details) {
	const out = new Set();
	for (const field of ["to", "cc"])
		for (const a of addressesOf(details ? details[field] : null))
			out.add(a.toLowerCase());
	return out;
}

/* The recipients check for compose details (as getComposeDetails or
 * onBeforeSend give them): the summary (see summarizeRecipients) plus the
 * choice, the sealpost account asked for and whether it is the identity's
 * own (matched), or state "error" with a notice (unreachable, wrong token,
 * not paired). */
export async function checkDetails(messenger, api, details) {
	const choice = choiceFromHeaders(details && details.customHeaders);
	const addresses = recipientAddresses(details);
	if (!api)
		return { state: "error", choice, notice: noticeFor("not-paired"), title: noticeFor("not-paired").title,
			lines: [], kind: "not-paired", addresses };
	if (addresses.length === 0)
		return { state: "empty", choice, title: "No recipients yet.", lines: [], addresses };
	try {
		const accounts = await api.accounts();
		const account = await accountForIdentity(messenger, accounts, details && details.identityId);
		const reply = await api.checkRecipients(account ? { addresses, account: account.name } : { addresses });
		const honoured = account ? account.policy_header !== false :
			!(Array.isArray(accounts) && accounts[0] && accounts[0].policy_header === false);
		return { ...summarizeRecipients(reply, choice.encrypt, honoured, visibleAddresses(details)), choice,
			account: account ? account.name : null, matched: account != null, honoured, addresses };
	} catch (e) {
		const notice = noticeFor(e, api.base);
		return { state: "error", choice, notice, title: notice.title, lines: [], kind: errorKind(e), addresses };
	}
}

/* The recipients check for compose window tabId (see checkDetails). */
export async function checkComposeRecipients(messenger, api, tabId) {
	return checkDetails(messenger, api, await messenger.compose.getComposeDetails(tabId));
}
