// api.test: the console's API client (plugin/console/api.js) against a fake
// fetch — request shapes, and how each kind of failure is classified.
import { test } from "node:test";
import assert from "node:assert/strict";

import { SealpostApi, SealpostApiError, errorKind } from "../../plugin/console/api.js";
import { describeError, formatFingerprint } from "../../plugin/console/pages.js";

const TOKEN = "ab".repeat(32);

/** A fetch that records its calls and answers status with body. */
function fakeFetch(status, body, { raw = false, statusText = "" } = {}) {
	const calls = [];
	const fn = async (url, init) => {
		calls.push({ url, init });
		const text = raw ? body : JSON.stringify(body);
		return {
			ok: status >= 200 && status < 300,
			status,
			statusText,
			text: async () => text,
		};
	};
	fn.calls = calls;
	return fn;
}

function api(fetch, base = "http://127.0.0.1:7587") {
	return new SealpostApi({ base, token: TOKEN, fetch });
}

async function failure(promise) {
	try {
		await promise;
	} catch (e) {
		return e;
	}
	assert.fail("expected a rejection");
}

test("GET carries the token and no body; the reply is parsed", async () => {
	const f = fakeFetch(200, { keys: { own: 1 } });
	const st = await api(f).status();
	assert.deepEqual(st, { keys: { own: 1 } });
	assert.equal(f.calls.length, 1);
	const { url, init } = f.calls[0];
	assert.equal(url, "http://127.0.0.1:7587/api/v1/status");
	assert.equal(init.method, "GET");
	assert.equal(init.headers.Authorization, "Bearer " + TOKEN);
	assert.equal(init.body, undefined);
	assert.equal(init.headers["Content-Type"], undefined);
});

test("same-origin base and a trailing slash", async () => {
	const f = fakeFetch(200, []);
	await api(f, "").policies();
	await api(f, "http://localhost:9/").keys("bob@example.net");
	assert.equal(f.calls[0].url, "/api/v1/policies");
	assert.equal(f.calls[1].url, "http://localhost:9/api/v1/keys?address=bob%40example.net");
});

test("writes send JSON with Content-Type: application/json", async () => {
	const f = fakeFetch(200, {});
	const a = api(f);
	await a.generateKey({ address: "alice@example.org" });
	await a.generateKey({ address: "alice@example.org", passphrase: "pw", force: true });
	await a.importKey({ armored: "-----BEGIN", address: "bob@example.net", secret: false });
	await a.setPolicy("@example.net", "require");
	await a.unsetPolicy("bob@example.net");
	await a.deleteKey("F07325FE", { confirm: true });
	await a.verifyKey("F07325FE");
	await a.acceptPending(3);
	await a.unlock({ address: "alice@example.org", passphrase: "pw" });
	await a.checkRecipients({ addresses: ["a@b.c"], account: "work" });
	const seen = f.calls.map(({ url, init }) => [init.method, url.replace("http://127.0.0.1:7587", ""),
		JSON.parse(init.body), init.headers["Content-Type"]]);
	const J = "application/json";
	assert.deepEqual(seen, [
		["POST", "/api/v1/keys/generate", { address: "alice@example.org", no_passphrase: true }, J],
		["POST", "/api/v1/keys/generate", { address: "alice@example.org", passphrase: "pw",
			force: true }, J],
		["POST", "/api/v1/keys/import", { armored: "-----BEGIN", address: "bob@example.net" }, J],
		["PUT", "/api/v1/policies/%40example.net", { policy: "require" }, J],
		["DELETE", "/api/v1/policies/bob%40example.net", {}, J],
		["DELETE", "/api/v1/keys/F07325FE", { confirm: true }, J],
		["POST", "/api/v1/keys/F07325FE/verify", {}, J],
		["POST", "/api/v1/pending/3/accept", {}, J],
		["POST", "/api/v1/keys/unlock", { address: "alice@example.org", passphrase: "pw" }, J],
		["POST", "/api/v1/check-recipients", { addresses: ["a@b.c"], account: "work" }, J],
	]);
});

test("queries: peers, decisions, recipients, export", async () => {
	const f = fakeFetch(200, {});
	const a = api(f, "");
	await a.peers("bob@example.net", "work");
	await a.decisions(50);
	await a.recipients(["a@b.c", "d&e@f.g"]);
	await a.exportKey("bob@example.net");
	assert.deepEqual(f.calls.map((c) => c.url), [
		"/api/v1/peers?address=bob%40example.net&account=work",
		"/api/v1/decisions?limit=50",
		"/api/v1/recipients?address=a%40b.c&address=d%26e%40f.g",
		"/api/v1/keys/bob%40example.net/export",
	]);
});

test("a path segment cannot escape its place", async () => {
	const f = fakeFetch(200, {});
	await api(f, "").verifyKey("../../status?x=1#y");
	assert.equal(f.calls[0].url, "/api/v1/keys/..%2F..%2Fstatus%3Fx%3D1%23y/verify");
});

test("fetch throwing is unreachable", async () => {
	const a = api(async () => { throw new TypeError("Failed to fetch"); });
	const e = await failure(a.status());
	assert.ok(e instanceof SealpostApiError);
	assert.ok(e instanceof Error);
	assert.equal(e.kind, "unreachable");
	assert.equal(e.status, 0);
	assert.match(describeError(e), /not answering/);
});

for (const [status, kind] of [[401, "unauthorized"], [403, "forbidden"], [400, "bad-request"],
	[404, "bad-request"], [405, "bad-request"], [409, "bad-request"], [413, "bad-request"],
	[415, "bad-request"], [422, "bad-request"], [500, "server"], [503, "server"]]) {
	test(`HTTP ${status} is ${kind}, with the API's message`, async () => {
		const msg = "the message for " + status;
		const e = await failure(api(fakeFetch(status, { error: msg, status })).keys());
		assert.ok(e instanceof SealpostApiError);
		assert.equal(e.kind, kind);
		assert.equal(e.status, status);
		assert.equal(e.message, msg);
		assert.equal(errorKind(status), kind);
	});
}

test("an error reply that is not JSON still classifies", async () => {
	const e = await failure(api(fakeFetch(502, "<html>bad gateway</html>",
		{ raw: true, statusText: "Bad Gateway" })).status());
	assert.equal(e.kind, "server");
	assert.equal(e.message, "HTTP 502 Bad Gateway");
});

test("a 200 that is not JSON is a server error", async () => {
	const e = await failure(api(fakeFetch(200, "hello", { raw: true })).status());
	assert.equal(e.kind, "server");
});

test("a body cut short is unreachable", async () => {
	const a = api(async () => ({ ok: true, status: 200, statusText: "",
		text: async () => { throw new TypeError("network error"); } }));
	assert.equal((await failure(a.status())).kind, "unreachable");
});

test("the default fetch is called unbound", async () => {
	const saved = globalThis.fetch;
	let self = "unset";
	globalThis.fetch = function (url) {
		self = this;
		return Promise.resolve({ ok: true, status: 200, statusText: "", text: async () => "[]" });
	};
	try {
		await new SealpostApi({ base: "", token: TOKEN }).policies();
	} finally {
		globalThis.fetch = saved;
	}
	assert.notEqual(self, "unset");
	assert.ok(!(self instanceof SealpostApi));
});

test("words for people", () => {
	const err = (kind, message = "m") => Object.assign(new Error(message), { kind });
	assert.match(describeError(err("unauthorized")), /did not accept the access token/);
	assert.match(describeError(err("unreachable")), /sealpost is not answering/);
	assert.match(describeError(err("server", "db")), /db/);
	assert.equal(describeError(err("bad-request", "invalid target")), "invalid target");
	assert.equal(formatFingerprint("f07325fef7286a3b"), "F073 25FE F728 6A3B");
});
