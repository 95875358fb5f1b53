// console.mjs: the web console in headless Chromium against a running
// sealpost (started by tests/integration/test_console.py): pair while sealpost
// does not answer, with a wrong token, then the right one; generate a key,
// set a rule — while nothing breaks the page's Content-Security-Policy and
// a hostile user ID stays text.
//
// Environment: SEALPOST_CONSOLE_URL (http://127.0.0.1:PORT/), SEALPOST_TOKEN,
// SEALPOST_ADDRESS (the account's address), SEALPOST_XSS_ADDRESS (the address
// of an imported key whose user ID carries markup). Prints one JSON line of
// what it saw; exit 0 when all went as expected.
import { chromium } from "playwright-core";

const URL = process.env.SEALPOST_CONSOLE_URL;
const TOKEN = process.env.SEALPOST_TOKEN;
const ADDRESS = process.env.SEALPOST_ADDRESS;
const XSS_ADDRESS = process.env.SEALPOST_XSS_ADDRESS || "";
const POLICY_TARGET = "@example.net";
const WRONG_TOKEN = "0".repeat(64);

if (!URL || !TOKEN || !ADDRESS) {
	console.error("console.mjs: SEALPOST_CONSOLE_URL, SEALPOST_TOKEN and SEALPOST_ADDRESS are needed");
	process.exit(2);
}

// The whole run, whatever hangs.
const deadline = setTimeout(() => {
	console.error("console.mjs: no result within 150 s");
	process.exit(3);
}, 150000);

const cspMessages = [];
const pageErrors = [];
const steps = [];

function check(cond, what) {
	if (!cond)
		throw new Error("check failed: " + what);
}

function step(name) {
	steps.push(name);
	console.error("console.mjs: " + name);
}

let browser;
let ok = false;
try {
	browser = await chromium.launch({
		executablePath: "/usr/bin/chromium",
		args: ["--headless=new", "--no-sandbox", "--disable-gpu",
			"--disable-background-networking", "--disable-dev-shm-usage"],
		timeout: 30000,
	});
	const context = await browser.newContext();
	const page = await context.newPage();
	page.setDefaultTimeout(20000);
	page.setDefaultNavigationTimeout(20000);
	page.on("console", (msg) => {
		const text = msg.text();
		if (/Content.Security.Policy|Refused to/i.test(text))
			cspMessages.push(text);
	});
	page.on("pageerror", (err) => pageErrors.push(String(err)));
	// Runs before the page's own scripts: records what the CSP blocked, and
	// would notice a user ID that ran as markup.
	await page.addInitScript(() => {
		window.__cspViolations = [];
		document.addEventListener("securitypolicyviolation", (e) => {
			window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
		});
	});

	step("open the console");
	const resp = await page.goto(URL, { waitUntil: "load" });
	check(resp && resp.status() === 200, "the page loads (status " + (resp && resp.status()) + ")");
	const pair = page.locator("#sp-pair");
	await pair.waitFor({ state: "visible" });

	step("sealpost not answering");
	const notice = page.locator("#sp-pair-notice");
	await page.route("**/api/v1/**", (route) => route.abort("connectionrefused"));
	await page.fill("#sp-token", TOKEN);
	await page.click("#sp-connect");
	await page.waitForFunction(() =>
		document.getElementById("sp-pair-notice").dataset.kind === "unreachable");
	const downText = await notice.textContent();
	check(/sealpost is not answering/.test(downText), "the not-running notice: " + downText);
	check(await page.evaluate(() => sessionStorage.getItem("sealpost.token")) === null,
		"no token kept while sealpost does not answer");
	await page.unroute("**/api/v1/**");

	step("a wrong token");
	await page.fill("#sp-token", WRONG_TOKEN);
	await page.click("#sp-connect");
	await notice.waitFor({ state: "visible" });
	await page.waitForFunction(() =>
		document.getElementById("sp-pair-notice").dataset.kind === "unauthorized");
	const wrongText = await notice.textContent();
	check(/did not accept the access token/.test(wrongText), "the wrong-token notice: " + wrongText);
	check(await page.evaluate(() => sessionStorage.getItem("sealpost.token")) === null,
		"a refused token is not kept");

	step("the right token");
	await page.fill("#sp-token", "token " + TOKEN + "\n");
	await page.click("#sp-connect");
	await pair.waitFor({ state: "hidden" });
	await page.locator("[data-role=status-own-keys]").waitFor({ state: "visible" });
	check((await page.locator("[data-role=status-discovery]").textContent()).startsWith("off"),
		"the status says key discovery is off");
	check(await page.evaluate(() => sessionStorage.getItem("sealpost.token")) === TOKEN,
		"the token is in sessionStorage");
	check(await page.evaluate(() => localStorage.length) === 0, "nothing in localStorage");

	if (XSS_ADDRESS !== "") {
		step("a user ID with markup is shown as text");
		const cell = page.locator("[data-role=keys-list] td.sp-addr", { hasText: XSS_ADDRESS });
		await cell.first().waitFor({ state: "visible" });
		check((await cell.first().textContent()).includes(XSS_ADDRESS), "the address as text");
		check(await page.locator("#sp-console img").count() === 0, "no img element in the console");
		check(await page.evaluate(() => window.__sealpostXss === undefined), "no script ran");
	}

	step("generate a key");
	await page.fill("[data-role=generate-address]", ADDRESS);
	await page.click("[data-action=generate]");
	const genNotice = page.locator("[data-role=generate-notice]");
	await page.waitForFunction(() => {
		const n = document.querySelector("[data-role=generate-notice]");
		return n && !n.classList.contains("sp-info") && n.textContent !== "";
	}, null, { timeout: 90000 });
	const genText = await genNotice.textContent();
	check(/^New key for /.test(genText), "the key was made: " + genText);
	const ownRow = page.locator("[data-role=keys-list] tr", { hasText: ADDRESS });
	await ownRow.filter({ hasText: "yours" }).first().waitFor({ state: "visible" });
	const fingerprint = await ownRow.filter({ hasText: "yours" }).first()
		.getAttribute("data-fingerprint");
	check(/^[0-9A-F]{40,64}$/.test(fingerprint || ""), "a fingerprint in the list");

	step("set a rule");
	await page.fill("[data-role=policy-target]", POLICY_TARGET);
	await page.selectOption("[data-role=policy-value]", "require");
	await page.click("[data-action=set-policy]");
	await page.locator(`[data-role=policies-list] tr[data-target="${POLICY_TARGET}"] ` +
		"[data-role=policy]", { hasText: "require" }).waitFor({ state: "visible" });

	step("export shows the armored key");
	await ownRow.filter({ hasText: "yours" }).first().locator("[data-action=export]").click();
	await page.waitForFunction(() => {
		const t = document.querySelector("[data-role=export-text]");
		return t && t.value.startsWith("-----BEGIN PGP PUBLIC KEY BLOCK-----");
	});

	step("forget the token");
	await page.click("#sp-forget");
	await pair.waitFor({ state: "visible" });
	check(await page.evaluate(() => sessionStorage.getItem("sealpost.token")) === null,
		"the token is forgotten");
	check(await page.locator("[data-role=keys-list]").count() === 0, "the pages are gone");

	const violations = await page.evaluate(() => window.__cspViolations);
	check(violations.length === 0, "no CSP violation: " + JSON.stringify(violations));
	check(cspMessages.length === 0, "no CSP message: " + JSON.stringify(cspMessages));
	check(pageErrors.length === 0, "no page error: " + JSON.stringify(pageErrors));
	console.log(JSON.stringify({ ok: true, steps, fingerprint, policy: POLICY_TARGET }));
	ok = true;
} catch (err) {
	console.error("console.mjs: " + (err && err.stack ? err.stack : err));
	console.log(JSON.stringify({ ok: false, steps, error: String(err), cspMessages, pageErrors }));
} finally {
	if (browser)
		await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 10000))]);
	clearTimeout(deadline);
}
process.exit(ok ? 0 : 1);
