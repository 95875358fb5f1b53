// The compose button's popup: encryption and signing for this message (as
// X-Sealpost-* header fields) and whether every recipient has a usable key.

import { SealpostApi } from "../console/api.js";
import { loadPairing, makeApi } from "../lib/pairing.js";
import { applyChoice, checkComposeRecipients, choiceFromHeaders } from "../lib/compose.js";
import { badgeFor, showBadge, CHANGED_MESSAGE } from "../lib/watch.js";

let tabId = null;
let api = null;

function selected(name) {
	const el = document.querySelector(`input[name="${name}"]:checked`);
	return el ? el.value : "default";
}

function select(name, value) {
	const el = document.querySelector(`input[name="${name}"][value="${value}"]`);
	if (el)
		el.checked = true;
}

async function recheck() {
	const summary = document.getElementById("summary");
	const list = document.getElementById("recipients");
	const notice = document.getElementById("notice");
	summary.textContent = "Asking sealpost…";
	list.textContent = "";
	notice.hidden = true;
	const result = await checkComposeRecipients(messenger, api, tabId);
	await showBadge(messenger, tabId, badgeFor(result));
	summary.textContent = result.title;
	summary.className = result.state;
	for (const line of result.lines) {
		const li = document.createElement("li");
		li.className = line.tone;
		li.textContent = line.text;
		list.append(li);
	}
	if (result.notice) {
		notice.textContent = "";
		const strong = document.createElement("strong");
		strong.textContent = result.notice.title;
		notice.append(strong, result.notice.text);
		notice.hidden = false;
	}
}

async function main() {
	const [tab] = await messenger.tabs.query({ active: true, currentWindow: true });
	tabId = tab.id;
	api = makeApi(await loadPairing(messenger.storage.local), SealpostApi, (...args) => fetch(...args));
	const details = await messenger.compose.getComposeDetails(tabId);
	const choice = choiceFromHeaders(details.customHeaders);
	select("encrypt", choice.encrypt);
	select("sign", choice.sign);
	document.getElementById("choice").addEventListener("change", async () => {
		await applyChoice(messenger, tabId, { encrypt: selected("encrypt"), sign: selected("sign") });
		/* The background checks again too (it keeps the badge for the tab). */
		messenger.runtime.sendMessage({ type: CHANGED_MESSAGE, tabId }).catch(() => {});
		await recheck();
	});
	document.getElementById("recheck").addEventListener("click", () => recheck());
	await recheck();
}

main().catch((e) => {
	document.getElementById("summary").textContent = "sealpost: " + (e && e.message ? e.message : String(e));
});
