// api.js: a small client for sealpost's local API (docs/api.md), shared by
// the web console and the Thunderbird add-on. No DOM access: Node can import it.

/** Why a call failed, in one word a page can act on. */
export const ERROR_KINDS = Object.freeze(["unreachable", "unauthorized", "forbidden",
	"bad-request", "server"]);

export class SealpostApiError extends Error {
	/**
	 * @param {string} kind one of ERROR_KINDS
	 * @param {number} status the HTTP status (0 when sealpost did not answer)
	 * @param {string} message the API's own error text, or what went wrong
	 */
	constructor(kind, status, message) {
		super(message);
		this.name = "SealpostApiError";
		this.kind = kind;
		this.status = status;
	}
}

/** The kind of error an HTTP status stands for (an answer that is not 2xx). */
export function errorKind(status) {
	if (status === 401)
		return "unauthorized";
	if (status === 403)
		return "forbidden";
	if (status >= 500)
		return "server";
	return "bad-request";
}

const seg = (s) => encodeURIComponent(String(s));

export class SealpostApi {
	/**
	 * @param {object} o
	 * @param {string} [o.base] e.g. "http://127.0.0.1:7587"; "" for the page's own origin
	 * @param {string} o.token what `sealpost pair` prints
	 * @param {Function} [o.fetch] defaults to globalThis.fetch
	 */
	constructor({ base = "", token = "", fetch } = {}) {
		this.base = String(base).replace(/\/+$/, "");
		this.token = String(token).trim();
		// Called as a plain function: browsers refuse a fetch bound to another object.
		this._fetch = fetch || ((...args) => globalThis.fetch(...args));
	}

	/** One request; resolves to the parsed JSON reply, rejects with SealpostApiError. */
	async request(method, path, body) {
		const headers = { Accept: "application/json" };
		if (this.token !== "")
			headers.Authorization = "Bearer " + this.token;
		const init = { method, headers, credentials: "omit", cache: "no-store",
			redirect: "error", referrerPolicy: "no-referrer" };
		if (method !== "GET" && method !== "HEAD") {
			headers["Content-Type"] = "application/json";
			init.body = JSON.stringify(body === undefined ? {} : body);
		}
		const url = this.base + "/api/v1/" + path;
		let resp;
		try {
			const f = this._fetch;
			resp = await f(url, init);
		} catch (e) {
			throw new SealpostApiError("unreachable", 0,
				"sealpost does not answer at " + (this.base || "this address") +
				(e && e.message ? " (" + e.message + ")" : ""));
		}
		let text = "";
		try {
			text = await resp.text();
		} catch (e) {
			throw new SealpostApiError("unreachable", 0, "the answer was cut short");
		}
		let value;
		let parsed = false;
		try {
			value = JSON.parse(text);
			parsed = true;
		} catch (e) {
			value = undefined;
		}
		if (!resp.ok) {
			const message = parsed && value && typeof value.error === "string" ?
				value.error : "HTTP " + resp.status + (resp.statusText ? " " + resp.statusText : "");
			throw new SealpostApiError(errorKind(resp.status), resp.status, message);
		}
		if (!parsed)
			throw new SealpostApiError("server", resp.status, "the answer is not JSON");
		return value;
	}

	get(path) { return this.request("GET", path); }

	// ---- status and accounts
	status() { return this.get("status"); }
	accounts() { return this.get("accounts"); }

	// ---- keys
	keys(address) {
		return this.get("keys" + (address ? "?address=" + seg(address) : ""));
	}
	/** Without a passphrase (undefined or "") the key gets none. */
	generateKey({ address, passphrase, force } = {}) {
		const body = { address };
		if (passphrase)
			body.passphrase = passphrase;
		else
			body.no_passphrase = true;
		if (force)
			body.force = true;
		return this.request("POST", "keys/generate", body);
	}
	importKey({ armored, address, secret } = {}) {
		const body = { armored };
		if (address)
			body.address = address;
		if (secret)
			body.secret = true;
		return this.request("POST", "keys/import", body);
	}
	/** fpr: a fingerprint or an address; public keys only. */
	exportKey(fpr) { return this.get("keys/" + seg(fpr) + "/export"); }
	verifyKey(fpr) { return this.request("POST", "keys/" + seg(fpr) + "/verify", {}); }
	rejectKey(fpr) { return this.request("POST", "keys/" + seg(fpr) + "/reject", {}); }
	/** A key of your own needs { confirm: true } (else 409). */
	deleteKey(fpr, { confirm = false } = {}) {
		return this.request("DELETE", "keys/" + seg(fpr), confirm ? { confirm: true } : {});
	}
	unlock({ address, passphrase } = {}) {
		const body = { address };
		if (passphrase)
			body.passphrase = passphrase;
		return this.request("POST", "keys/unlock", body);
	}

	// ---- pending key changes
	pending() { return this.get("pending"); }
	acceptPending(id) { return this.request("POST", "pending/" + seg(id) + "/accept", {}); }
	refusePending(id) { return this.request("POST", "pending/" + seg(id) + "/refuse", {}); }

	// ---- policy rules
	policies() { return this.get("policies"); }
	/** target: user@domain or @domain; policy: require, opportunistic or never. */
	setPolicy(target, policy) {
		return this.request("PUT", "policies/" + seg(target), { policy });
	}
	unsetPolicy(target) { return this.request("DELETE", "policies/" + seg(target), {}); }

	// ---- Autocrypt peers, decisions, recipients
	peers(address, account) {
		const q = [];
		if (address)
			q.push("address=" + seg(address));
		if (account)
			q.push("account=" + seg(account));
		return this.get("peers" + (q.length ? "?" + q.join("&") : ""));
	}
	decisions(limit) {
		return this.get("decisions" + (limit ? "?limit=" + seg(limit) : ""));
	}
	recipients(list, account) {
		const q = (list || []).map((a) => "address=" + seg(a));
		if (account)
			q.push("account=" + seg(account));
		return this.get("recipients?" + q.join("&"));
	}
	checkRecipients({ addresses, account } = {}) {
		const body = { addresses: addresses || [] };
		if (account)
			body.account = account;
		return this.request("POST", "check-recipients", body);
	}
}
