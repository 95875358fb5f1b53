// display: the status of the message shown in a tab, set as the title of the
// message display action of that tab. messenger and the API client come in.

import { statusFromHeaders, parseDecryption, parseSignature, headerValues, keyInfoFromKeys } from "./status.js";
import { errorKind } from "./notice.js";

/* Title of the button when no single message is shown (the manifest's). */
export const NO_MESSAGE_TITLE = null;

/* Messages of onMessagesDisplayed / getDisplayedMessages: an array in
 * Manifest V2, a MessageList ({id, messages}) in V3. */
export function messagesOf(list) {
	if (Array.isArray(list))
		return list;
	if (list && Array.isArray(list.messages))
		return list.messages;
	return [];
}

/* What the API says about the signer's key of a decrypted message (see
 * statusFromHeaders); null when the status does not need it. */
export async function keyInfoForHeaders(api, headers) {
	const dec = parseDecryption(headerValues(headers, "x-sealpost-decryption"));
	if (dec.state !== "ok")
		return null;
	const sig = parseSignature(headerValues(headers, "x-sealpost-signature"));
	if (!sig.fingerprint)
		return null;
	if (!api)
		return { state: "not-paired" };
	try {
		return keyInfoFromKeys(await api.keys(), sig.fingerprint);
	} catch (e) {
		return { state: "error", kind: errorKind(e), message: e && e.message };
	}
}

/* The message's parts and headers. Thunderbird's own OpenPGP is kept out
 * (sealpost's view is already decrypted); a Thunderbird without the
 * option (before 133) is asked plainly. */
async function getFullOnce(messenger, messageId) {
	try {
		return await messenger.messages.getFull(messageId, { decrypt: false });
	} catch (e) {
		return await messenger.messages.getFull(messageId);
	}
}

/* Waits before asking again when a message cannot be read yet (a message
 * just stored or still downloading); tests shorten them. */
export const readRetry = { delaysMs: [300, 1000] };

async function getFullHeaders(messenger, messageId) {
	for (let attempt = 0; ; attempt++) {
		try {
			return await getFullOnce(messenger, messageId);
		} catch (e) {
			if (attempt >= readRetry.delaysMs.length)
				throw e;
			await new Promise((r) => setTimeout(r, readRetry.delaysMs[attempt]));
		}
	}
}

/* The status of one message (see statusFromHeaders), or a status saying the
 * message could not be read. */
export async function statusForMessage(messenger, api, messageId) {
	let full;
	try {
		full = await getFullHeaders(messenger, messageId);
	} catch (e) {
		return {
			title: "sealpost: this message could not be read", tone: "warning", encryption: "unknown",
			signature: null, verification: null, fromMismatch: null,
			details: ["Thunderbird could not read this message, so its status is unknown. Try again once it is downloaded."],
		};
	}
	const headers = full && full.headers ? full.headers : {};
	const keyInfo = await keyInfoForHeaders(api, headers);
	return statusFromHeaders(headers, keyInfo);
}

/* The latest update asked for each tab: an older one that finishes later
 * (a slow read, a slow API) must not overwrite the newer title. */
const latestUpdate = new Map();

/* Sets the title of the message display action in tab to the status of
 * the message it shows. Answers the status (null: no single message). */
export async function updateDisplayedTab(messenger, api, tab, list) {
	const messages = messagesOf(list);
	if (!tab || typeof tab.id !== "number")
		return null;
	const seq = (latestUpdate.get(tab.id) || 0) + 1;
	latestUpdate.set(tab.id, seq);
	if (messages.length !== 1) {
		await messenger.messageDisplayAction.setTitle({ tabId: tab.id, title: NO_MESSAGE_TITLE });
		return null;
	}
	const status = await statusForMessage(messenger, api, messages[0].id);
	if (latestUpdate.get(tab.id) === seq)
		await messenger.messageDisplayAction.setTitle({ tabId: tab.id, title: status.title });
	return status;
}

/* Every tab that shows messages, brought up to date (after a start or a
 * change of the pairing). */
export async function updateAllTabs(messenger, api) {
	let tabs = [];
	try {
		tabs = await messenger.tabs.query({});
	} catch (e) {
		return;
	}
	for (const tab of tabs) {
		if (tab.type !== "mail" && tab.type !== "messageDisplay")
			continue;
		try {
			const list = await messenger.messageDisplay.getDisplayedMessages(tab.id);
			await updateDisplayedTab(messenger, api, tab, list);
		} catch (e) {
			/* A tab closing meanwhile is no error. */
		}
	}
}
