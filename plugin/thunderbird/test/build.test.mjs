// build_xpi.py: the manifest's promises, a deterministic archive, and a
// clear failure when a file the manifest or a script names is missing.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const ADDON = dirname(dirname(fileURLToPath(import.meta.url)));
const PLUGIN = dirname(ADDON);

function build(root, out) {
	return spawnSync("python3", [join(root, "thunderbird", "build_xpi.py"), out], { encoding: "utf8" });
}

/* The names in a zip's central directory, in order. */
function zipNames(buf) {
	let eocd = buf.length - 22;
	while (eocd >= 0 && buf.readUInt32LE(eocd) !== 0x06054b50)
		eocd--;
	const count = buf.readUInt16LE(eocd + 10);
	let p = buf.readUInt32LE(eocd + 16);
	const names = [];
	for (let i = 0; i < count; i++) {
		const n = buf.readUInt16LE(p + 28), x = buf.readUInt16LE(p + 30), c = buf.readUInt16LE(p + 32);
		names.push(buf.toString("utf8", p + 46, p + 46 + n));
		p += 46 + n + x + c;
	}
	return names;
}

function withCopy(fn) {
	const dir = mkdtempSync(join(tmpdir(), "sealpost-xpi-"));
	try {
		cpSync(join(ADDON), join(dir, "thunderbird"), { recursive: true });
		cpSync(join(PLUGIN, "console"), join(dir, "console"), { recursive: true });
		return fn(dir);
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}

test("manifest: MV3, the add-on id, Thunderbird 128+, loopback host permissions", () => {
	const m = JSON.parse(readFileSync(join(ADDON, "manifest.json"), "utf8"));
	assert.equal(m.manifest_version, 3);
	assert.equal(m.browser_specific_settings.gecko.id, "addon@sealpost.invalid");
	assert.equal(m.browser_specific_settings.gecko.strict_min_version, "128.0");
	assert.deepEqual(m.host_permissions, ["http://127.0.0.1/*", "http://localhost/*", "http://[::1]/*"]);
	for (const p of ["storage", "messagesRead", "compose", "accountsRead"])
		assert.ok(m.permissions.includes(p), p);
	assert.ok(m.message_display_action.default_popup);
	assert.ok(m.compose_action.default_popup);
});

test("the archive is deterministic and holds the add-on and the console", () => withCopy((dir) => {
	const a = join(dir, "a.xpi"), b = join(dir, "b.xpi");
	const r1 = build(dir, a);
	assert.equal(r1.status, 0, r1.stderr);
	/* Touching a file changes its time, not the archive. */
	writeFileSync(join(dir, "thunderbird", "background.js"), readFileSync(join(dir, "thunderbird", "background.js")));
	const r2 = build(dir, b);
	assert.equal(r2.status, 0, r2.stderr);
	assert.ok(readFileSync(a).equals(readFileSync(b)));
	const names = zipNames(readFileSync(a));
	assert.deepEqual(names, [...names].sort());
	for (const n of ["manifest.json", "background.js", "lib/status.js", "lib/compose.js", "lib/display.js",
		"popup/display.html", "popup/compose.html", "options/options.html", "console/api.js", "console/pages.js",
		"console/console.css"])
		assert.ok(names.includes(n), n);
	for (const n of names)
		assert.ok(!/^(test\/|build_xpi\.py|meson\.build|package\.json)/.test(n), n);
}));

test("a missing file fails the build clearly", () => withCopy((dir) => {
	rmSync(join(dir, "thunderbird", "popup", "compose.html"));
	const r = build(dir, join(dir, "x.xpi"));
	assert.equal(r.status, 1);
	assert.match(r.stderr, /manifest\.json names popup\/compose\.html, which is not in the add-on/);
}));

test("a missing console file fails the build clearly", () => withCopy((dir) => {
	rmSync(join(dir, "console", "pages.js"));
	const r = build(dir, join(dir, "x.xpi"));
	assert.equal(r.status, 1);
	assert.match(r.stderr, /missing file .*console\/pages\.js/);
}));

test("a module import that goes nowhere fails the build", () => withCopy((dir) => {
	writeFileSync(join(dir, "thunderbird", "lib", "extra.js"), "import { x } from \"./nowhere.js\";\nexport const y = x;\n");
	const r = build(dir, join(dir, "x.xpi"));
	assert.equal(r.status, 1);
	assert.match(r.stderr, /lib\/extra\.js refers to \.\/nowhere\.js/);
}));

test("usage", () => {
	const r = spawnSync("python3", [join(ADDON, "build_xpi.py")], { encoding: "utf8" });
	assert.equal(r.status, 2);
	assert.match(r.stderr, /usage: build_xpi\.py OUT\.xpi/);
});
