// Test doubles: a fake `messenger` that records what the add-on sets, and a
// fake fetch that answers like sealpost's API (docs/api.md).

import { SealpostApi } from "../../console/api.js";

export const BASE = "http://127.0.0.1:7587";
export const TOKEN = "6de1380328d262a28121219fcc8bdfedae3bc1b54442047e1d10a7d36a3f1b7e";
export const BOB_FPR = "F07325FEF7286A3BDD28423A32B044AA1D6CC2C7";
export const CAROL_FPR = "0B5C6D7E8F9012345678901234567890ABCDEF12";

/* A storage area like messenger.storage.local. */
export function fakeStorage(initial = {}) {
	const data = { ...initial };
	return {
		data,
		async get(key) {
			if (key == null)
				return { ...data };
			const keys = Array.isArray(key) ? key : [key];
			const out = {};
			for (const k of keys)
				if (k in data)
					out[k] = structuredClone(data[k]);
			return out;
		},
		async set(obj) { Object.assign(data, structuredClone(obj)); },
		async remove(key) { delete data[key]; },
	};
}

/* messenger with: messages (id -> headers, or an Error to throw from
 * getFull), compose (tabId -> details), identities (id -> identity), tabs. */
export function fakeMessenger({ messages = {}, compose = {}, identities = {}, tabs = [], displayed = {} } = {}) {
	const calls = { setTitle: [], setComposeDetails: [], getFull: [], composeTitle: [], badgeText: [],
		badgeColor: [], badgeTextColor: [], openPopup: [], getComposeDetails: [], sent: [] };
	const composeState = structuredClone(compose);
	return {
		calls,
		composeState,
		storage: { local: fakeStorage() },
		messages: {
			async getFull(id, options) {
				calls.getFull.push({ id, options });
				const m = messages[id];
				if (m instanceof Error)
					throw m;
				if (m === undefined)
					throw new Error(`no message ${id}`);
				return { contentType: "text/plain", headers: structuredClone(m), parts: [] };
			},
		},
		messageDisplayAction: {
			async setTitle(details) { calls.setTitle.push(structuredClone(details)); },
		},
		composeAction: {
			async setTitle(details) { calls.composeTitle.push(structuredClone(details)); },
			async setBadgeText(details) { calls.badgeText.push(structuredClone(details)); },
			async setBadgeBackgroundColor(details) { calls.badgeColor.push(structuredClone(details)); },
			async setBadgeTextColor(details) { calls.badgeTextColor.push(structuredClone(details)); },
			async openPopup(options) { calls.openPopup.push(options === undefined ? null : structuredClone(options)); return true; },
		},
		runtime: {
			async sendMessage(message) { calls.sent.push(structuredClone(message)); },
		},
		messageDisplay: {
			async getDisplayedMessages(tabId) { return { id: null, messages: displayed[tabId] || [] }; },
		},
		tabs: {
			async query() { return structuredClone(tabs); },
			async get(tabId) {
				if (!(tabId in composeState))
					throw new Error(`no tab ${tabId}`);
				return { id: tabId, type: "messageCompose", windowId: 1 };
			},
		},
		compose: {
			async getComposeDetails(tabId) {
				calls.getComposeDetails.push(tabId);
				if (!(tabId in composeState))
					throw new Error(`no compose tab ${tabId}`);
				return structuredClone(composeState[tabId]);
			},
			async setComposeDetails(tabId, details) {
				calls.setComposeDetails.push({ tabId, details: structuredClone(details) });
				Object.assign(composeState[tabId], structuredClone(details));
			},
		},
		identities: {
			async get(id) {
				if (!(id in identities))
					throw new Error(`no identity ${id}`);
				return structuredClone(identities[id]);
			},
		},
	};
}

function reply(status, body) {
	return new Response(JSON.stringify(body), {
		status, headers: { "Content-Type": "application/json; charset=utf-8" },
	});
}

/* fetch answering like sealpost: mode "ok", "unreachable" (fetch rejects),
 * "hang" (never answers), "wrong-token" (401 everywhere) or "forbidden"
 * (403). Records requests. */
export function fakeFetch({ mode = "ok", keys = [], accounts = [], recipients = {}, token = TOKEN } = {}) {
	const requests = [];
	const f = async (url, init = {}) => {
		const u = new URL(url);
		const body = init.body ? JSON.parse(init.body) : undefined;
		requests.push({ method: init.method || "GET", path: u.pathname, search: u.search, body,
			authorization: init.headers && init.headers.Authorization });
		if (mode === "unreachable")
			throw new TypeError("NetworkError when attempting to fetch resource.");
		if (mode === "hang")
			return new Promise(() => {});
		if (mode === "forbidden")
			return reply(403, { error: "Origin not accepted", status: 403 });
		if (mode === "wrong-token" || !init.headers || init.headers.Authorization !== "Bearer " + token)
			return reply(401, { error: "missing or wrong token", status: 401 });
		const path = u.pathname.replace(/^\/api\/v1\//, "");
		if (path === "status")
			return reply(200, { accounts, keys: { own: 1 } });
		if (path === "keys")
			return reply(200, keys);
		if (path === "accounts")
			return reply(200, accounts);
		if (path === "check-recipients") {
			const list = body.addresses.map((a) => recipients[a.toLowerCase()] || {
				address: a, valid: true, key: null, key_usable: false, key_problem: "no key",
				policy: "opportunistic", rule: null, outcome: "plain",
			});
			return reply(200, {
				account: body.account || (accounts[0] && accounts[0].name) || null, recipients: list,
				all_have_keys: list.every((r) => r.key_usable), refused: list.some((r) => r.outcome === "refuse"),
			});
		}
		return reply(404, { error: "no such path", status: 404 });
	};
	f.requests = requests;
	return f;
}

export function api(fetchFn, token = TOKEN) {
	return new SealpostApi({ base: BASE, token, fetch: fetchFn });
}

export function keyEntry(fpr, address, acceptance, own = false) {
	return { fingerprint: fpr, addresses: [address], created: "2026-12-02", expires: null, usable: true,
		unusable_reason: null, source: "manual", acceptance, own };
}

export function recipient(address, keyUsable, policy = "opportunistic", outcome) {
	return {
		address, valid: true, key: keyUsable ? BOB_FPR : null, key_usable: keyUsable,
		key_problem: keyUsable ? null : "no key", policy, rule: null,
		outcome: outcome || (keyUsable ? "encrypt" : policy === "require" ? "refuse" : "plain"),
	};
}
