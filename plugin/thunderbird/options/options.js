// The add-on's settings: pairing with sealpost (API URL and token, kept in
// storage.local), then the console's pages on that API.

import { SealpostApi } from "../console/api.js";
import { mountConsole } from "../console/pages.js";
import {
	API_ORIGINS, DEFAULT_BASE, clearPairing, loadPairing, makeApi, normalizeBase, normalizeToken,
	savePairing,
} from "../lib/pairing.js";
import { noticeFor } from "../lib/notice.js";

const root = document.getElementById("console");
let mounted = null;

function say(title, text, ok) {
	const el = document.getElementById("pair-notice");
	el.textContent = "";
	const strong = document.createElement("strong");
	strong.textContent = title;
	el.append(strong, text || "");
	el.className = "notice" + (ok ? " ok" : "");
	el.setAttribute("data-state", ok ? "ok" : "problem");
	el.hidden = false;
}

function unmount() {
	if (mounted && typeof mounted.unmount === "function")
		mounted.unmount();
	mounted = null;
	root.textContent = "";
}

/* Host permissions are granted at install; if the user withdrew them, a
 * click here asks again (permissions.request needs a user action). */
async function checkPermission() {
	const has = await messenger.permissions.contains({ origins: API_ORIGINS });
	document.getElementById("grant").hidden = has;
	if (!has)
		say("The add-on may not reach sealpost",
			" Click \"Allow the add-on to reach sealpost\" to let it connect to this computer.");
	return has;
}

async function connect(pairing) {
	unmount();
	if (!pairing) {
		say(noticeFor("not-paired").title, " " + noticeFor("not-paired").text);
		return;
	}
	if (!(await checkPermission()))
		return;
	const api = makeApi(pairing, SealpostApi, (...args) => fetch(...args));
	try {
		const status = await api.status();
		const n = Array.isArray(status.accounts) ? status.accounts.length : 0;
		say("Paired with sealpost", ` at ${pairing.base} (${n} account${n === 1 ? "" : "s"}).`, true);
	} catch (e) {
		const notice = noticeFor(e, pairing.base);
		say(notice.title, " " + notice.text);
		if (notice.kind === "unauthorized" || notice.kind === "unreachable")
			return;
	}
	mounted = mountConsole(root, api, {
		onUnauthorized: (e) => {
			const notice = noticeFor(e, pairing.base);
			say(notice.title, " " + notice.text);
		},
	});
}

async function main() {
	const pairing = await loadPairing(messenger.storage.local);
	document.getElementById("base").value = pairing ? pairing.base : DEFAULT_BASE;
	document.getElementById("token").value = pairing ? pairing.token : "";

	document.getElementById("pair-form").addEventListener("submit", async (ev) => {
		ev.preventDefault();
		const base = normalizeBase(document.getElementById("base").value);
		const token = normalizeToken(document.getElementById("token").value);
		if (base.error || token.error) {
			say("Not paired", " " + (base.error || token.error));
			return;
		}
		const p = { base: base.base, token: token.token };
		document.getElementById("base").value = p.base;
		await savePairing(messenger.storage.local, p);
		await connect(p);
	});
	document.getElementById("forget").addEventListener("click", async () => {
		await clearPairing(messenger.storage.local);
		document.getElementById("token").value = "";
		await connect(null);
	});
	document.getElementById("grant").addEventListener("click", async () => {
		const granted = await messenger.permissions.request({ origins: API_ORIGINS });
		if (granted)
			await connect(await loadPairing(messenger.storage.local));
	});
	await connect(pairing);
}

main().catch((e) => say("sealpost settings failed", " " + (e && e.message ? e.message : String(e))));
