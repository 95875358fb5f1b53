// Pairing (URL and token in storage.local) and the notices for an
// unreachable sealpost, a wrong token or no pairing at all.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
	normalizeBase, normalizeToken, loadPairing, savePairing, clearPairing, makeApi, DEFAULT_BASE, isPairingKey,
} from "../lib/pairing.js";
import { noticeFor, errorKind } from "../lib/notice.js";
import { SealpostApi, SealpostApiError } from "../../console/api.js";
import { fakeStorage, fakeFetch, TOKEN, BASE } from "./fakes.mjs";

test("API URLs: loopback only, what sealpost pair prints is taken", () => {
	assert.deepEqual(normalizeBase(""), { base: DEFAULT_BASE });
	assert.deepEqual(normalizeBase(" http://127.0.0.1:7587/api/v1/ "), { base: "http://127.0.0.1:7587" });
	assert.deepEqual(normalizeBase("http://localhost:9000/"), { base: "http://localhost:9000" });
	assert.deepEqual(normalizeBase("http://[::1]:7587"), { base: "http://[::1]:7587" });
	assert.deepEqual(normalizeBase("http://127.0.0.2:80"), { base: "http://127.0.0.2" });
	for (const bad of ["https://127.0.0.1:7587", "http://evil.example:7587", "127.0.0.1:7587x", "not a url",
		"http://user:pw@127.0.0.1:7587", "http://127.0.0.1:7587/other", "http://127.0.0.1:7587/?q=1", "file:///etc/passwd"])
		assert.ok(normalizeBase(bad).error, bad);
});

test("tokens: 64 hex digits, as printed", () => {
	assert.deepEqual(normalizeToken(TOKEN), { token: TOKEN });
	assert.deepEqual(normalizeToken(`token ${TOKEN.toUpperCase()}\n`), { token: TOKEN });
	assert.deepEqual(normalizeToken(`"${TOKEN}"`), { token: TOKEN });
	for (const bad of ["", "abc", TOKEN + "0", TOKEN.slice(1) + "g", null])
		assert.ok(normalizeToken(bad).error);
});

test("the pairing is kept in storage.local", async () => {
	const storage = fakeStorage();
	assert.equal(await loadPairing(storage), null);
	await savePairing(storage, { base: BASE, token: TOKEN, extra: 1 });
	assert.deepEqual(storage.data, { pairing: { base: BASE, token: TOKEN } });
	assert.deepEqual(await loadPairing(storage), { base: BASE, token: TOKEN });
	assert.ok(isPairingKey({ pairing: { newValue: 1 } }));
	assert.ok(!isPairingKey({ other: 1 }));
	await clearPairing(storage);
	assert.equal(await loadPairing(storage), null);
	assert.equal(await loadPairing(fakeStorage({ pairing: { base: 1 } })), null);
});

test("one client: SealpostApi with the stored URL and token", async () => {
	assert.equal(makeApi(null, SealpostApi, fakeFetch()), null);
	const f = fakeFetch();
	const a = makeApi({ base: BASE, token: TOKEN }, SealpostApi, f);
	assert.ok(a instanceof SealpostApi);
	await a.status();
	assert.equal(f.requests[0].path, "/api/v1/status");
	assert.equal(f.requests[0].authorization, "Bearer " + TOKEN);
});

test("notices: unreachable, wrong token, forbidden, not paired", async () => {
	const unreachable = await makeApi({ base: BASE, token: TOKEN }, SealpostApi, fakeFetch({ mode: "unreachable" }))
		.status().catch((e) => e);
	assert.equal(errorKind(unreachable), "unreachable");
	const n1 = noticeFor(unreachable, BASE);
	assert.equal(n1.title, "sealpost is not reachable");
	assert.match(n1.text, /^sealpost does not answer at http:\/\/127\.0\.0\.1:7587\. Check that sealpost is running/);

	const wrong = await makeApi({ base: BASE, token: TOKEN }, SealpostApi, fakeFetch({ mode: "wrong-token" }))
		.status().catch((e) => e);
	assert.equal(wrong.status, 401);
	const n2 = noticeFor(wrong, BASE);
	assert.equal(n2.kind, "unauthorized");
	assert.equal(n2.title, "The token is wrong");
	assert.match(n2.text, /sealpost pair/);

	const forbidden = await makeApi({ base: BASE, token: TOKEN }, SealpostApi, fakeFetch({ mode: "forbidden" }))
		.status().catch((e) => e);
	assert.equal(noticeFor(forbidden).kind, "forbidden");
	assert.match(noticeFor(forbidden).text, /Origin not accepted/);

	assert.equal(noticeFor("not-paired").title, "Not paired with sealpost");
	assert.equal(noticeFor(new TypeError("NetworkError")).kind, "unreachable");
	assert.equal(noticeFor(new SealpostApiError("server", 500, "database locked")).text, "database locked");
	assert.equal(noticeFor({ status: 422, message: "wrong passphrase" }).kind, "bad-request");
	assert.equal(noticeFor({ status: 401 }).kind, "unauthorized");
	assert.equal(noticeFor({ status: 503 }).kind, "server");
	assert.equal(noticeFor(null).kind, "unreachable");
});
