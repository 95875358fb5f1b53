// pages.js: the console's pages — status, keys, unlock, policy rules, pending
// key changes, Autocrypt peers, decisions — rendered into any element. Text
// from the API (a key's user ID is anyone's choice) only ever goes into
// textContent or attribute values, never into markup.

const POLICIES = ["require", "opportunistic", "never"];

/* How sealpost looks up keys it does not have (status.key_discovery). */
function discoveryText(d) {
	const methods = d && Array.isArray(d.methods) ? d.methods : [];
	if (methods.length === 0)
		return "off (keys come from you and from Autocrypt)";
	const names = methods.map((m) => m === "wkd" ? "the recipient's domain (WKD)" :
		m === "keyserver" ? "the keyserver" + (d.keyserver ? " " + d.keyserver : "") : String(m));
	return "asks " + names.join(", then ") + " for a missing key";
}

/** A sentence a non-expert understands for a SealpostApiError (or any error). */
export function describeError(err) {
	const msg = err && err.message ? err.message : String(err);
	switch (err && err.kind) {
	case "unreachable":
		return "sealpost is not answering. Make sure it is running (sealpost serve, with " +
			"api_listen set in its configuration), then try again.";
	case "unauthorized":
		return "sealpost did not accept the access token. Run \"sealpost pair\" in a " +
			"terminal and paste the token it prints.";
	case "forbidden":
		return "sealpost refused this page: it only answers its own console and the sealpost " +
			"add-on, opened as 127.0.0.1 or localhost. (" + msg + ")";
	case "server":
		return "sealpost ran into a problem on its side: " + msg;
	case "bad-request":
		return msg;
	default:
		return "Something went wrong: " + msg;
	}
}

/** A fingerprint in groups of four, for reading aloud and comparing. */
export function formatFingerprint(fpr) {
	return String(fpr || "").replace(/\s+/g, "").toUpperCase().replace(/(.{4})(?=.)/g, "$1 ");
}

/**
 * Renders the whole console into root.
 * @param {Element} root
 * @param {import("./api.js").SealpostApi} api
 * @param {{onUnauthorized?: Function}} [options]
 * @returns {{refresh: Function, unmount: Function}}
 */
export function mountConsole(root, api, options = {}) {
	const doc = root.ownerDocument;
	const win = doc.defaultView;
	let mounted = true;
	let accounts = [];
	let unauthorizedSent = false;

	// ---- DOM helpers: properties and attributes, never markup.

	const PROPS = new Set(["value", "checked", "disabled", "hidden", "readOnly", "type", "name",
		"placeholder", "autocomplete", "rows", "required", "htmlFor", "title", "spellcheck",
		"multiple", "accept", "open"]);

	function h(tag, props, ...children) {
		const el = doc.createElement(tag);
		for (const [k, v] of Object.entries(props || {})) {
			if (v === undefined || v === null || v === false && !PROPS.has(k))
				continue;
			if (k === "class")
				el.className = v;
			else if (k.startsWith("on") && typeof v === "function")
				el.addEventListener(k.slice(2), v);
			else if (PROPS.has(k))
				el[k] = v;
			else
				el.setAttribute(k, String(v));
		}
		append(el, children);
		return el;
	}

	function append(el, children) {
		for (const c of children) {
			if (c === null || c === undefined || c === false)
				continue;
			if (Array.isArray(c))
				append(el, c);
			else if (typeof c === "object" && c.nodeType)
				el.appendChild(c);
			else
				el.appendChild(doc.createTextNode(String(c)));
		}
	}

	function clear(el) {
		while (el.firstChild)
			el.removeChild(el.firstChild);
	}

	function fill(el, ...children) {
		clear(el);
		append(el, children);
	}

	function fpr(text) {
		return h("code", { class: "sp-fpr", "data-fingerprint": text }, formatFingerprint(text));
	}

	function table(headers, rows, empty) {
		if (rows.length === 0)
			return h("p", { class: "sp-empty" }, empty);
		return h("table", { class: "sp-table" },
			h("thead", null, h("tr", null, headers.map((t) => h("th", { scope: "col" }, t)))),
			h("tbody", null, rows));
	}

	function field(label, input, hint) {
		return h("label", { class: "sp-field" }, h("span", { class: "sp-label" }, label), input,
			hint ? h("span", { class: "sp-hint" }, hint) : null);
	}

	function button(label, onclick, props) {
		return h("button", Object.assign({ type: "button", onclick }, props || {}), label);
	}

	// ---- notices and errors

	const banner = h("div", { class: "sp-banner", role: "alert", hidden: true,
		"data-role": "banner" });

	function showBanner(text, kind) {
		banner.className = "sp-banner sp-" + (kind || "error");
		banner.hidden = !text;
		banner.setAttribute("data-kind", kind || "");
		fill(banner, text || "");
	}

	/** Shows err in a section's notice; 401 and unreachable go to the banner too. */
	function report(notice, err) {
		const kind = err && err.kind;
		if (kind === "unauthorized" || kind === "unreachable")
			showBanner(describeError(err), kind);
		if (kind === "unauthorized" && !unauthorizedSent) {
			unauthorizedSent = true;
			if (typeof options.onUnauthorized === "function")
				options.onUnauthorized(err);
		}
		if (notice)
			say(notice, describeError(err), "error");
	}

	function say(notice, text, kind) {
		notice.className = "sp-notice sp-" + (kind || "info");
		notice.hidden = !text;
		fill(notice, text || "");
	}

	/** Runs an action with its button disabled, reporting into notice. */
	async function act(notice, btn, fn, done, busy) {
		if (btn)
			btn.disabled = true;
		say(notice, busy || "", "info");
		try {
			const result = await fn();
			if (done)
				say(notice, typeof done === "function" ? done(result) : done, "ok");
			return result;
		} catch (err) {
			report(notice, err);
			return undefined;
		} finally {
			if (btn)
				btn.disabled = false;
		}
	}

	function section(name, title, intro) {
		const notice = h("p", { class: "sp-notice", role: "status", hidden: true,
			"data-role": name + "-notice" });
		const body = h("div", { class: "sp-body", "data-role": name + "-body" });
		const el = h("section", { class: "sp-section", "data-section": name },
			h("h2", null, title), intro ? h("p", { class: "sp-intro" }, intro) : null,
			notice, body);
		return { el, notice, body };
	}

	function addressOptions(listId) {
		return h("datalist", { id: listId },
			accounts.map((a) => h("option", { value: a.address })));
	}

	const uid = "sp" + Math.random().toString(36).slice(2, 8);

	// ---- status

	const status = section("status", "Status");

	function renderStatus(st) {
		const acctRows = (st.accounts || []).map((a) => h("tr", null,
			h("td", null, a.name), h("td", null, a.address), h("td", null, a.policy)));
		const k = st.keys || {};
		const ac = st.autocrypt_peers || {};
		fill(status.body,
			h("dl", { class: "sp-facts" },
				h("dt", null, "Configuration"), h("dd", null, st.config || "(defaults)"),
				h("dt", null, "Keys of your own"),
				h("dd", { "data-role": "status-own-keys" },
					String(k.own ?? 0) + " (" + String(k.own_usable ?? 0) + " usable)"),
				h("dt", null, "Keys of others"),
				h("dd", null, String(k.peer ?? 0) + " (" + String(k.peer_usable ?? 0) +
					" usable, " + String(k.rejected ?? 0) + " rejected)"),
				h("dt", null, "Autocrypt peers"),
				h("dd", null, String(ac.peers ?? 0) + " (" + String(ac.with_key ?? 0) +
					" with a key)"),
				h("dt", null, "Key changes waiting"), h("dd", null, String(st.pending ?? 0)),
				h("dt", null, "Looking up keys"),
				h("dd", { "data-role": "status-discovery" }, discoveryText(st.key_discovery))),
			h("h3", null, "Accounts"),
			table(["Account", "Address", "Default policy"], acctRows, "No account is configured."),
			(st.recent_refusals || []).length > 0 ? [
				h("h3", null, "Recently refused messages"),
				table(["Time", "Recipients", "Why"], st.recent_refusals.map((r) => h("tr", null,
					h("td", null, r.time), h("td", null, r.recipients || ""),
					h("td", null, r.reason || ""))), ""),
			] : null);
	}

	async function loadStatus() {
		try {
			const [st, accts] = await Promise.all([api.status(), api.accounts()]);
			accounts = Array.isArray(accts) ? accts : [];
			renderStatus(st);
			refreshAddressLists();
			say(status.notice, "");
		} catch (err) {
			report(status.notice, err);
		}
	}

	// ---- keys

	const keys = section("keys", "Keys",
		"Your own keys (with their secret part) and the keys sealpost knows for the people " +
		"you write to.");
	const keysList = h("div", { "data-role": "keys-list" });
	const keyPanel = h("div", { class: "sp-panel", hidden: true, "data-role": "key-panel" });

	function keyRow(k) {
		const addresses = (k.addresses || []).length > 0 ? k.addresses : ["(no address)"];
		const usable = k.usable ? "yes" : "no" + (k.unusable_reason ? " (" + k.unusable_reason + ")" : "");
		const row = h("tr", { "data-fingerprint": k.fingerprint },
			h("td", { class: "sp-addr" }, addresses.map((a) => h("div", null, a))),
			h("td", null, fpr(k.fingerprint)),
			h("td", null, k.created || "", h("br"), k.expires ? "expires " + k.expires : "never expires"),
			h("td", null, usable),
			h("td", null, k.source || ""),
			h("td", null, k.acceptance || ""),
			h("td", null, k.own ? "yours (with secret key)" : "someone else's"),
			h("td", { class: "sp-actions" },
				button("Export", () => showExport(k), { "data-action": "export" }),
				k.own || k.acceptance === "verified" ? null :
					button("Verify…", () => showVerify(k), { "data-action": "verify" }),
				k.acceptance === "rejected" || k.own ? null :
					button("Reject", (e) => rejectKey(k, e.currentTarget), { "data-action": "reject" }),
				button("Delete…", () => showDelete(k), { "data-action": "delete", class: "sp-danger" })));
		return row;
	}

	function renderKeys(list) {
		fill(keysList, table(["Address", "Fingerprint", "Created", "Usable", "Source",
			"Acceptance", "Whose", ""], list.map(keyRow), "No keys yet."));
	}

	async function loadKeys() {
		try {
			renderKeys(await api.keys());
		} catch (err) {
			report(keys.notice, err);
		}
	}

	function closePanel() {
		keyPanel.hidden = true;
		clear(keyPanel);
	}

	async function showExport(k) {
		const data = await act(keys.notice, null, () => api.exportKey(k.fingerprint));
		if (!data)
			return;
		const text = h("textarea", { class: "sp-armored", readOnly: true, rows: 12,
			spellcheck: false, "data-role": "export-text", value: data.armored });
		const download = button("Download", () => {
			const blob = new win.Blob([data.armored], { type: "application/pgp-keys" });
			const url = win.URL.createObjectURL(blob);
			const a = h("a", { href: url, download: k.fingerprint + ".asc", hidden: true });
			doc.body.appendChild(a);
			a.click();
			a.remove();
			win.setTimeout(() => win.URL.revokeObjectURL(url), 10000);
		});
		fill(keyPanel, h("h3", null, "Public key ", fpr(k.fingerprint)),
			h("p", null, "Give this to people who want to write to you encrypted."),
			text, h("div", { class: "sp-row" }, download, button("Close", closePanel)));
		keyPanel.hidden = false;
	}

	function showVerify(k) {
		const confirm = button("The fingerprints match: verify", async (e) => {
			const ok = await act(keys.notice, e.currentTarget, () => api.verifyKey(k.fingerprint),
				"Marked as verified: " + (k.addresses || []).join(", "));
			if (ok) {
				closePanel();
				refresh();
			}
		}, { "data-action": "verify-confirm", class: "sp-primary" });
		fill(keyPanel, h("h3", null, "Verify the key of ", (k.addresses || []).join(", ")),
			h("p", null, "Ask its owner for their fingerprint — in person or on the phone, not " +
				"by e-mail — and compare it with this one, group by group:"),
			h("p", { class: "sp-fpr-big", "data-role": "verify-fingerprint" },
				formatFingerprint(k.fingerprint)),
			h("div", { class: "sp-row" }, confirm, button("Cancel", closePanel)));
		keyPanel.hidden = false;
	}

	async function rejectKey(k, btn) {
		if (await act(keys.notice, btn, () => api.rejectKey(k.fingerprint),
			"Rejected: sealpost will never use " + formatFingerprint(k.fingerprint)))
			refresh();
	}

	function showDelete(k) {
		const confirm = button(k.own ? "Delete my key for good" : "Delete", async (e) => {
			const ok = await act(keys.notice, e.currentTarget,
				() => api.deleteKey(k.fingerprint, { confirm: !!k.own }),
				"Deleted " + formatFingerprint(k.fingerprint));
			if (ok) {
				closePanel();
				refresh();
			}
		}, { "data-action": "delete-confirm", class: "sp-danger" });
		fill(keyPanel, h("h3", null, "Delete the key of ", (k.addresses || []).join(", "), "?"),
			fpr(k.fingerprint),
			h("p", null, k.own ?
				"This is a key of your own: its secret part is deleted too, for good. Mail " +
				"encrypted to it can no longer be read, unless you have a backup." :
				"sealpost forgets this key and what it knew about it."),
			h("div", { class: "sp-row" }, confirm, button("Cancel", closePanel)));
		keyPanel.hidden = false;
	}

	// generate
	const genAddress = h("input", { type: "email", name: "address", required: true,
		autocomplete: "off", list: uid + "-addresses", "data-role": "generate-address",
		placeholder: "you@example.org" });
	const genPass = h("input", { type: "password", autocomplete: "new-password",
		"data-role": "generate-passphrase" });
	const genPass2 = h("input", { type: "password", autocomplete: "new-password",
		"data-role": "generate-passphrase2" });
	const genNotice = h("p", { class: "sp-notice", role: "status", hidden: true,
		"data-role": "generate-notice" });
	const genButton = h("button", { type: "submit", class: "sp-primary",
		"data-action": "generate" }, "Generate key");
	const genForm = h("form", { class: "sp-form", "data-role": "generate-form",
		onsubmit: async (e) => {
			e.preventDefault();
			const address = genAddress.value.trim();
			const passphrase = genPass.value;
			if (passphrase !== genPass2.value) {
				say(genNotice, "The two passphrases differ.", "error");
				return;
			}
			const key = await act(genNotice, genButton,
				() => api.generateKey({ address, passphrase }),
				(k) => "New key for " + address + ": " + formatFingerprint(k.fingerprint),
				"Generating… this can take a few seconds.");
			genPass.value = "";
			genPass2.value = "";
			if (key)
				refresh();
		} },
		h("h3", null, "Generate a key of your own"),
		field("Address", genAddress),
		field("Passphrase (optional)", genPass,
			"Leave empty for a key without one. sealpost does not keep it."),
		field("Passphrase again", genPass2),
		h("div", { class: "sp-row" }, genButton), genNotice);

	// import
	const impText = h("textarea", { rows: 6, spellcheck: false, "data-role": "import-text",
		placeholder: "-----BEGIN PGP PUBLIC KEY BLOCK-----" });
	const impFile = h("input", { type: "file", accept: ".asc,.gpg,.pgp,.key,.txt,application/pgp-keys",
		"data-role": "import-file", onchange: async () => {
			const f = impFile.files && impFile.files[0];
			if (!f)
				return;
			if (f.size > 1024 * 1024) {
				say(impNotice, "That file is larger than 1 MiB: it is not a key.", "error");
				return;
			}
			impText.value = await f.text();
		} });
	const impAddress = h("input", { type: "email", autocomplete: "off",
		"data-role": "import-address", placeholder: "optional: bob@example.net" });
	const impSecret = h("input", { type: "checkbox", "data-role": "import-secret" });
	const impNotice = h("p", { class: "sp-notice", role: "status", hidden: true,
		"data-role": "import-notice" });
	const impButton = h("button", { type: "submit", "data-action": "import" }, "Import");
	const impForm = h("form", { class: "sp-form", "data-role": "import-form",
		onsubmit: async (e) => {
			e.preventDefault();
			const armored = impText.value;
			if (armored.trim() === "") {
				say(impNotice, "Paste a key or choose a file first.", "error");
				return;
			}
			const res = await act(impNotice, impButton,
				() => api.importKey({ armored, address: impAddress.value.trim(),
					secret: impSecret.checked }),
				(r) => "Imported: " + (r.imported || []).map((k) =>
					(k.addresses || []).join(", ") + " " + formatFingerprint(k.fingerprint))
					.join("; ") + ". Verify a key before you rely on it.");
			if (res) {
				impText.value = "";
				impFile.value = "";
				refresh();
			}
		} },
		h("h3", null, "Import a key"),
		field("Key (armored text)", impText),
		field("…or a file", impFile),
		field("Only for this address", impAddress),
		h("label", { class: "sp-check" }, impSecret, " It is a secret key of my own"),
		h("div", { class: "sp-row" }, impButton), impNotice);

	fill(keys.body, keysList, keyPanel, h("div", { class: "sp-forms" }, genForm, impForm));

	// ---- unlock

	const unlock = section("unlock", "Unlock a key",
		"A key with a passphrase must be unlocked before sealpost can read or sign mail with " +
		"it. The passphrase goes to gpg-agent and is not stored here.");
	const unAddress = h("input", { type: "email", autocomplete: "off", list: uid + "-addresses",
		"data-role": "unlock-address", placeholder: "you@example.org" });
	const unPass = h("input", { type: "password", autocomplete: "off",
		"data-role": "unlock-passphrase" });
	const unButton = h("button", { type: "submit", "data-action": "unlock" }, "Unlock");
	fill(unlock.body, h("form", { class: "sp-form sp-inline", onsubmit: async (e) => {
		e.preventDefault();
		const passphrase = unPass.value;
		unPass.value = "";
		await act(unlock.notice, unButton,
			() => api.unlock({ address: unAddress.value.trim(), passphrase }),
			(r) => r.unlocked ? "Unlocked " + formatFingerprint(r.fingerprint) :
				"This key has no passphrase: nothing to unlock.");
	} }, field("Address", unAddress), field("Passphrase", unPass), unButton));

	// ---- policies

	const policies = section("policies", "Encryption rules",
		"require: never send unencrypted (mail without a key is refused); opportunistic: " +
		"encrypt when a key is known; never: always send in the clear.");
	const polList = h("div", { "data-role": "policies-list" });
	const polTarget = h("input", { type: "text", autocomplete: "off", required: true,
		spellcheck: false, "data-role": "policy-target",
		placeholder: "bob@example.net or @example.net" });
	const polSelect = h("select", { "data-role": "policy-value" },
		POLICIES.map((p) => h("option", { value: p }, p)));
	const polButton = h("button", { type: "submit", class: "sp-primary",
		"data-action": "set-policy" }, "Set rule");

	function renderPolicies(list) {
		fill(polList, table(["For", "Policy", "Changed", ""], list.map((r) => h("tr",
			{ "data-target": r.target },
			h("td", null, r.target), h("td", { "data-role": "policy" }, r.policy),
			h("td", null, r.updated || ""),
			h("td", null, button("Remove", async (e) => {
				if (await act(policies.notice, e.currentTarget, () => api.unsetPolicy(r.target),
					"Removed the rule for " + r.target))
					refresh();
			}, { "data-action": "unset-policy" })))), "No rules: each account's default applies."));
	}

	async function loadPolicies() {
		try {
			renderPolicies(await api.policies());
		} catch (err) {
			report(policies.notice, err);
		}
	}

	fill(policies.body, polList, h("form", { class: "sp-form sp-inline",
		"data-role": "policy-form", onsubmit: async (e) => {
			e.preventDefault();
			const target = polTarget.value.trim();
			const r = await act(policies.notice, polButton,
				() => api.setPolicy(target, polSelect.value),
				(x) => "Rule set: " + x.target + " → " + x.policy);
			if (r) {
				polTarget.value = "";
				refresh();
			}
		} }, field("Address or @domain", polTarget), field("Policy", polSelect), polButton));

	// ---- pending key changes

	const pending = section("pending", "Key changes waiting for you",
		"Someone you verified seems to use a new key. That is normal after a new computer or " +
		"a lost key — but also what an attacker would do. Check the new fingerprint with them " +
		"before accepting.");

	function renderPending(list) {
		fill(pending.body, table(["Address", "Account", "Received", "Old key", "New key", ""],
			list.map((p) => h("tr", { "data-pending": String(p.id) },
				h("td", null, p.address), h("td", null, p.account),
				h("td", null, p.received + " (" + p.source + ")"),
				h("td", null, fpr(p.old_fingerprint)),
				h("td", null, fpr(p.new_fingerprint),
					p.new_key && p.new_key.addresses ?
						h("div", { class: "sp-hint" }, p.new_key.addresses.join(", ")) : null),
				h("td", { class: "sp-actions" },
					button("Accept new key", async (e) => {
						if (await act(pending.notice, e.currentTarget,
							() => api.acceptPending(p.id), "Now using the new key for " + p.address))
							refresh();
					}, { "data-action": "accept" }),
					button("Refuse", async (e) => {
						if (await act(pending.notice, e.currentTarget,
							() => api.refusePending(p.id), "Kept the old key for " + p.address))
							refresh();
					}, { "data-action": "refuse" })))),
			"Nothing is waiting."));
	}

	async function loadPending() {
		try {
			renderPending(await api.pending());
		} catch (err) {
			report(pending.notice, err);
		}
	}

	// ---- Autocrypt peers

	const peers = section("peers", "Autocrypt peers",
		"What sealpost learned from the Autocrypt headers of mail you received.");
	const peerAddress = h("input", { type: "email", autocomplete: "off",
		"data-role": "peer-address", placeholder: "bob@example.net" });
	const peerButton = h("button", { type: "submit", "data-action": "peers" }, "Look up");
	const peerResult = h("div", { "data-role": "peers-result" });
	fill(peers.body, h("form", { class: "sp-form sp-inline", onsubmit: async (e) => {
		e.preventDefault();
		const res = await act(peers.notice, peerButton, () => api.peers(peerAddress.value.trim()));
		if (!res)
			return;
		fill(peerResult,
			h("p", null, "sealpost knows " + res.count + " peers, " + res.with_key + " with a key."),
			table(["Account", "Last seen", "Key", "Prefers", "Gossip key", "Recommendation"],
				(res.peers || []).map((p) => h("tr", null,
					h("td", null, p.account), h("td", null, p.last_seen || "never"),
					h("td", null, p.public_key ? fpr(p.public_key) : "none"),
					h("td", null, p.prefer_encrypt),
					h("td", null, p.gossip_key ? fpr(p.gossip_key) : "none"),
					h("td", null, p.recommendation))),
				"Nothing known about this address."));
	} }, field("Address", peerAddress), peerButton), peerResult);

	// ---- decisions

	const decisions = section("decisions", "Recent outgoing mail",
		"What sealpost did with recent messages and why (never their content).");

	function renderDecisions(list) {
		fill(decisions.body, table(["Time", "Account", "Recipients", "Decision", "Why"],
			list.map((d) => h("tr", null,
				h("td", null, d.time), h("td", null, d.account || ""),
				h("td", null, d.recipients || ""), h("td", null, d.decision || ""),
				h("td", null, d.reason || ""))), "No mail sent through sealpost yet."));
	}

	async function loadDecisions() {
		try {
			renderDecisions(await api.decisions(50));
		} catch (err) {
			report(decisions.notice, err);
		}
	}

	// ---- the whole

	const addressList = h("datalist", { id: uid + "-addresses" });

	function refreshAddressLists() {
		const fresh = addressOptions(uid + "-addresses");
		fill(addressList, Array.from(fresh.childNodes));
		if (accounts.length > 0) {
			if (genAddress.value === "")
				genAddress.value = accounts[0].address;
			if (unAddress.value === "")
				unAddress.value = accounts[0].address;
		}
	}

	const refreshButton = button("Refresh", () => refresh(), { "data-action": "refresh" });
	const container = h("div", { class: "sp-console", "data-role": "console" },
		h("div", { class: "sp-toolbar" }, refreshButton), banner, addressList,
		status.el, keys.el, unlock.el, policies.el, pending.el, peers.el, decisions.el);
	clear(root);
	root.appendChild(container);

	async function refresh() {
		if (!mounted)
			return;
		unauthorizedSent = false;
		showBanner("");
		await Promise.all([loadStatus(), loadKeys(), loadPolicies(), loadPending(),
			loadDecisions()]);
	}

	function unmount() {
		mounted = false;
		genPass.value = "";
		genPass2.value = "";
		unPass.value = "";
		clear(root);
	}

	const ready = refresh();
	return { refresh, unmount, ready };
}
