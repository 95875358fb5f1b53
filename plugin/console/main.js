// main.js: the web console's own start (index.html): the pairing form, the
// token kept in this tab's sessionStorage only, then the pages.
import { SealpostApi } from "./api.js";
import { describeError, mountConsole } from "./pages.js";

const STORAGE_KEY = "sealpost.token";
const TOKEN = /^[0-9a-f]{64}$/;

const pairSection = document.getElementById("sp-pair");
const pairForm = document.getElementById("sp-pair-form");
const tokenInput = document.getElementById("sp-token");
const connectButton = document.getElementById("sp-connect");
const pairNotice = document.getElementById("sp-pair-notice");
const consoleRoot = document.getElementById("sp-console");
const forgetButton = document.getElementById("sp-forget");

let mounted = null;

function storage() {
	try {
		return window.sessionStorage;
	} catch (e) {
		return null;	// storage disabled: the token lives as long as the page
	}
}

function storeToken(token) {
	const s = storage();
	if (s === null)
		return;
	if (token)
		s.setItem(STORAGE_KEY, token);
	else
		s.removeItem(STORAGE_KEY);
}

function showPair(notice, kind) {
	if (mounted !== null) {
		mounted.unmount();
		mounted = null;
	}
	forgetButton.hidden = true;
	pairSection.hidden = false;
	pairNotice.textContent = notice || "";
	pairNotice.hidden = !notice;
	pairNotice.dataset.kind = kind || "";
	tokenInput.focus();
}

/** "token 6de1..." as `sealpost pair` prints it, or the bare token. */
function cleanToken(text) {
	return text.trim().replace(/^token\s+/i, "").trim().toLowerCase();
}

async function connect(token) {
	const api = new SealpostApi({ base: "", token });
	connectButton.disabled = true;
	try {
		await api.status();
	} catch (err) {
		if (err.kind === "unauthorized")
			storeToken(null);
		showPair(describeError(err), err.kind);
		return;
	} finally {
		connectButton.disabled = false;
	}
	storeToken(token);
	tokenInput.value = "";
	pairSection.hidden = true;
	pairNotice.hidden = true;
	forgetButton.hidden = false;
	mounted = mountConsole(consoleRoot, api, {
		onUnauthorized(err) {
			storeToken(null);
			showPair(describeError(err), "unauthorized");
		},
	});
}

pairForm.addEventListener("submit", (e) => {
	e.preventDefault();
	const token = cleanToken(tokenInput.value);
	if (!TOKEN.test(token)) {
		showPair("That is not a sealpost token: it is 64 characters, digits and a to f. " +
			"Run \"sealpost pair\" and copy the line after \"token\".", "invalid");
		return;
	}
	connect(token);
});

forgetButton.addEventListener("click", () => {
	storeToken(null);
	showPair("The token is forgotten. Paste it again to continue.", "forgotten");
});

const saved = storage()?.getItem(STORAGE_KEY);
if (saved && TOKEN.test(saved))
	connect(saved);
else
	showPair("");
