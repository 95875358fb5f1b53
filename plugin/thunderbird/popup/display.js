// The message display button's popup: the status of the shown message in
// full sentences, and a notice when sealpost cannot be asked.

import { SealpostApi } from "../console/api.js";
import { loadPairing, makeApi } from "../lib/pairing.js";
import { messagesOf, statusForMessage } from "../lib/display.js";
import { noticeFor } from "../lib/notice.js";

function show(id, text) {
	document.getElementById(id).textContent = text;
}

function showNotice(notice) {
	const el = document.getElementById("notice");
	el.textContent = "";
	const strong = document.createElement("strong");
	strong.textContent = notice.title;
	el.append(strong, notice.text);
	el.hidden = false;
}

async function main() {
	const pairing = await loadPairing(messenger.storage.local);
	const api = makeApi(pairing, SealpostApi, (...args) => fetch(...args));
	const [tab] = await messenger.tabs.query({ active: true, currentWindow: true });
	const messages = tab ? messagesOf(await messenger.messageDisplay.getDisplayedMessages(tab.id)) : [];
	if (messages.length !== 1) {
		show("title", "Select a single message to see what sealpost did with it.");
		return;
	}
	const status = await statusForMessage(messenger, api, messages[0].id);
	document.getElementById("status").className = "tone-" + status.tone;
	show("title", status.title);
	const details = document.getElementById("details");
	for (const line of status.details) {
		const p = document.createElement("p");
		p.textContent = line;
		details.append(p);
	}
	await checkApi(api, pairing);
}

/* The notice for an unreachable sealpost or a wrong token, also when the
 * message itself did not need the API. */
async function checkApi(api, pairing) {
	if (!api) {
		showNotice(noticeFor("not-paired"));
		return;
	}
	try {
		await api.status();
	} catch (e) {
		showNotice(noticeFor(e, pairing.base));
	}
}

document.getElementById("settings").addEventListener("click", (ev) => {
	ev.preventDefault();
	messenger.runtime.openOptionsPage();
	window.close();
});

main().catch((e) => show("title", "sealpost: " + (e && e.message ? e.message : String(e))));
