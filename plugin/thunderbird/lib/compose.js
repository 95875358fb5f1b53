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

/* What happens to one recipient when the message says encrypt = mode (the
 * header beats the rules when the account honours it). */
export function outcomeFor(r, mode, honoured) {
	if (!r || r.valid === false)
		return "invalid";
	if (r.outcome === "tempfail")
		return "tempfail";
	if (!honoured || mode === "default" || !mode)
		return r.outcome;
	if (mode === "never")
		return "plain";
	if (r.key_usable)
		return "encrypt";
	return mode === "require" ? "refuse" : "plain";
}

/* The recipients check in words: {state, title, lines: [{address, text, tone}]}.
 * state: "empty", "all-keys", "some-lack-keys", "refused", "error". */
export function summarizeRecipients(reply, mode = "default", honoured = true) {
	const list = reply && Array.isArray(reply.recipients) ? reply.recipients : [];
	if (list.length === 0)
		return { state: "empty", title: "No recipients yet.", lines: [] };
	const lines = [];
	let lacking = 0, refused = 0, plain = 0, temp = 0;
	for (const r of list) {
		const address = String(r && r.address != null ? r.address : "?");
		const outcome = outcomeFor(r, mode, honoured);
		if (outcome === "invalid") {
			lacking++;
			lines.push({ address, tone: "bad", text: `${address} is not a valid address` +
				(r && r.error ? ` (${r.error})` : "") + "." });
			continue;
		}
		if (!r.key_usable)
			lacking++;
		if (outcome === "refuse")
			refused++;
		if (outcome === "plain")
			plain++;
		if (outcome === "tempfail")
			temp++;
		const why = r.key_problem ? ` (${r.key_problem})` : "";
		let text;
		if (r.key_usable)
			text = `${address} has a usable key` + (outcome === "plain" ? ", but will get it unencrypted." : ".");
		else if (outcome === "refuse")
			text = `${address} lacks a usable key${why}: encryption is required, so sealpost will refuse to send.`;
		else if (outcome === "tempfail")
			text = `${address}: sealpost cannot check the keys right now; try again.`;
		else
			text = `${address} lacks a usable key${why}: it will be sent unencrypted.`;
		lines.push({ address, text,
			tone: r.key_usable && outcome === "encrypt" ? "good" : outcome === "refuse" || outcome === "tempfail" ? "bad" : "warning" });
	}
	let state, title;
	if (refused > 0) {
		state = "refused";
		title = "sealpost will refuse this message: " + (refused === 1 ?
			"a recipient must get it encrypted but lacks a usable key." :
			`${refused} recipients must get it encrypted but lack usable keys.`);
	} else if (temp > 0) {
		state = "error";
		title = "sealpost cannot check the keys right now; try again in a moment.";
	} else if (lacking === 0) {
		state = "all-keys";
		title = plain === 0 ? `Every recipient has a usable key: the message will be encrypted.` :
			"Every recipient has a usable key, but the message will be sent unencrypted (encryption is off).";
	} else {
		state = "some-lack-keys";
		title = `${lacking === 1 ? "One recipient lacks" : lacking + " recipients lack"} a usable key: ` +
			"the message will not be encrypted for everyone.";
	}
	return { state, title, lines };
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

/* The recipients check for compose window tabId: the summary (see
 * summarizeRecipients) plus the choice, or state "error" with a notice
 * (unreachable, wrong token, not paired). */
export async function checkComposeRecipients(messenger, api, tabId) {
	const details = await messenger.compose.getComposeDetails(tabId);
	const choice = choiceFromHeaders(details && details.customHeaders);
	const addresses = recipientAddresses(details);
	if (!api)
		return { state: "error", choice, notice: noticeFor("not-paired"), title: noticeFor("not-paired").title, lines: [] };
	if (addresses.length === 0)
		return { state: "empty", choice, title: "No recipients yet.", lines: [] };
	try {
		const accounts = await api.accounts();
		const account = await accountForIdentity(messenger, accounts, details && details.identityId);
		const reply = await api.checkRecipients(account ? { addresses, account: account.name } : { addresses });
		const honoured = account ? account.policy_header !== false :
			!(Array.isArray(accounts) && accounts[0] && accounts[0].policy_header === false);
		return { ...summarizeRecipients(reply, choice.encrypt, honoured), choice,
			account: account ? account.name : null, honoured };
	} catch (e) {
		const notice = noticeFor(e, api.base);
		return { state: "error", choice, notice, title: notice.title, lines: [], kind: errorKind(e) };
	}
}
