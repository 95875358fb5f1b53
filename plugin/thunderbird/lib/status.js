// status: what sealpost's X-Sealpost-* header fields say about a displayed
// message, in sentences for people who do not know OpenPGP. Pure: no browser API.

/* The longest user ID or reason shown; longer text is cut with an ellipsis. */
const MAX_SHOWN = 120;
const FPR_RE = /^[0-9A-Fa-f]{16,64}$/;

/* Text from a header shown as one line of bounded, printable text. */
export function cleanText(value, max = MAX_SHOWN) {
	let s = typeof value === "string" ? value : value == null ? "" : String(value);
	s = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, " ").replace(/\s+/g, " ").trim();
	const chars = Array.from(s);
	if (chars.length > max)
		s = chars.slice(0, max - 1).join("").trimEnd() + "\u2026";
	return s;
}

/* The values of a header field, whatever the case of its name. */
export function headerValues(headers, name) {
	if (headers == null || typeof headers !== "object")
		return [];
	const want = name.toLowerCase();
	const out = [];
	for (const key of Object.keys(headers)) {
		if (key.toLowerCase() !== want)
			continue;
		const v = headers[key];
		for (const item of Array.isArray(v) ? v : [v])
			if (item != null)
				out.push(String(item));
	}
	return out;
}

/* "F07325FE..." in groups of four, as people compare fingerprints. */
export function formatFingerprint(fpr) {
	if (typeof fpr !== "string" || !FPR_RE.test(fpr))
		return cleanText(fpr, 80);
	return fpr.toUpperCase().replace(/(.{4})(?=.)/g, "$1 ");
}

/* The mail address in a user ID ("Bob <bob@example.net>" or "bob@example.net"). */
export function addressOfUserId(uid) {
	if (typeof uid !== "string")
		return null;
	let m = /<([^<>\s]+@[^<>\s]+)>\s*$/.exec(uid);
	if (m)
		return m[1];
	m = /^\s*([^\s<>@]+@[^\s<>@]+)\s*$/.exec(uid);
	if (m)
		return m[1];
	m = /([^\s<>()"@]+@[^\s<>()"@]+)/.exec(uid);
	return m ? m[1] : null;
}

/* X-Sealpost-Decryption: {state: "ok" | "failed" | "none" | "unreadable", reason}. */
export function parseDecryption(values) {
	if (values.length === 0)
		return { state: "none", reason: null };
	const distinct = [...new Set(values.map((v) => v.trim().replace(/\s+/g, " ")))];
	if (distinct.length > 1)
		return { state: "unreadable", reason: "more than one decryption status" };
	const v = distinct[0];
	if (/^ok$/i.test(v))
		return { state: "ok", reason: null };
	const m = /^failed\b\s*(?:\((.*)\))?\s*(.*)$/is.exec(v);
	if (m) {
		const reason = cleanText(m[1] !== undefined ? m[1] : m[2]);
		return { state: "failed", reason: reason === "" ? null : reason };
	}
	return { state: "unreadable", reason: null };
}

/* X-Sealpost-Signature: {kind, fingerprint, userId, address, why}; kind is one
 * of none, good, mismatch, unknown-key, partial, bad, unreadable. */
export function parseSignature(values) {
	const empty = { kind: "none", fingerprint: null, userId: null, address: null, why: null };
	if (values.length === 0)
		return empty;
	const distinct = [...new Set(values.map((v) => v.trim().replace(/\s+/g, " ")))];
	if (distinct.length > 1)
		return { ...empty, kind: "unreadable", why: "more than one signature status" };
	const v = distinct[0];
	const m = /^(\S+)\s*(.*)$/s.exec(v);
	if (!m)
		return { ...empty, kind: "unreadable" };
	const word = m[1].toLowerCase();
	const rest = m[2];
	if (word === "none" && rest === "")
		return empty;
	if (word === "bad") {
		const w = /^\((.*)\)$/s.exec(rest);
		const why = cleanText(w ? w[1] : rest);
		return { ...empty, kind: "bad", why: why === "" ? null : why };
	}
	if (word === "good" || word === "mismatch" || word === "unknown-key" || word === "partial") {
		const f = /^(\S+)\s*(.*)$/s.exec(rest);
		const fpr = f && FPR_RE.test(f[1]) ? f[1].toUpperCase() : null;
		if (fpr === null)
			return { ...empty, kind: "unreadable" };
		const uid = word === "good" || word === "mismatch" ? cleanText(f[2]) : "";
		return {
			kind: word, fingerprint: fpr, userId: uid === "" ? null : uid,
			address: uid === "" ? null : addressOfUserId(uid), why: null,
		};
	}
	return { ...empty, kind: "unreadable" };
}

/* What the keyInfo says about the signer's key: verified, unverified,
 * rejected, missing (sealpost has no such key listed), not-paired, or
 * unavailable (the API could not be asked; keyInfo.kind says why). */
function verificationOf(keyInfo) {
	if (keyInfo == null || typeof keyInfo !== "object" || keyInfo.state === "not-paired")
		return { state: "not-paired" };
	if (keyInfo.state === "error")
		return { state: "unavailable", kind: typeof keyInfo.kind === "string" ? keyInfo.kind : "unreachable" };
	if (keyInfo.state === "missing")
		return { state: "missing" };
	if (keyInfo.state === "found") {
		const a = keyInfo.acceptance;
		if (a === "verified" || a === "unverified" || a === "rejected")
			return { state: a, own: keyInfo.own === true };
		return { state: "unverified", own: keyInfo.own === true };
	}
	return { state: "not-paired" };
}

const API_PROBLEM = {
	unreachable: "sealpost is not reachable",
	unauthorized: "the add-on's token is wrong",
	forbidden: "sealpost refused the add-on",
};

function apiProblemText(kind) {
	return API_PROBLEM[kind] || "sealpost could not be asked";
}

/* Title suffix and detail sentence on whether the user verified the key. */
function verificationWords(ver, who) {
	switch (ver.state) {
	case "verified":
		return { suffix: " (key verified)", line: ver.own ?
			"This is one of your own keys." :
			`You have verified this key: it really belongs to ${who}.` };
	case "unverified":
		return { suffix: " (key not verified yet)", line:
			`You have not verified this key yet. To be sure it belongs to ${who}, compare its ` +
			"fingerprint with them (by phone or in person) and mark it verified in the sealpost settings." };
	case "rejected":
		return { suffix: ", but you rejected that key", line:
			"You marked this key as rejected: do not trust this signature." };
	case "missing":
		return { suffix: "", line: "sealpost no longer lists this key, so whether it is verified is unknown." };
	case "unavailable":
		return { suffix: ` (key not checked: ${apiProblemText(ver.kind)})`, line:
			`Whether you verified this key is unknown: ${apiProblemText(ver.kind)}.` };
	default:
		return { suffix: "", line:
			"Whether you verified this key is unknown: the add-on is not paired with sealpost (see its settings)." };
	}
}

/* The status of a message from its header fields (as messages.getFull gives
 * them: lower-case names, arrays of values) and what the API said about the
 * signer's key (see verificationOf). Never throws. */
export function statusFromHeaders(headers, keyInfo) {
	try {
		return statusFromHeadersUnsafe(headers, keyInfo);
	} catch (e) {
		return {
			title: "Could not decrypt: sealpost's status for this message is unreadable",
			tone: "warning", encryption: "unreadable", signature: null, verification: null,
			fromMismatch: null, details: ["The add-on could not read sealpost's status for this message."],
		};
	}
}

function statusFromHeadersUnsafe(headers, keyInfo) {
	const dec = parseDecryption(headerValues(headers, "x-sealpost-decryption"));
	const status = {
		title: "", tone: "neutral", encryption: dec.state === "none" ? "plain" : dec.state,
		signature: null, verification: null, fromMismatch: null, details: [],
	};
	if (dec.state === "none" && /^\s*multipart\/encrypted\b/i.test(headerValues(headers, "content-type").join(" "))) {
		/* Still encrypted: it did not pass through sealpost's decryption
		 * (an account with decrypt = false, or not through sealpost). */
		status.title = "Could not decrypt: sealpost did not decrypt this message";
		status.encryption = "not-decrypted";
		status.tone = "warning";
		status.details.push("This message is encrypted, but it did not reach Thunderbird through " +
			"sealpost's decryption (is this account set up to go through sealpost, with decrypt on?).");
		return status;
	}
	if (dec.state === "none") {
		status.title = "Not encrypted";
		status.details.push("This message was not encrypted: it was readable by anyone who handled it " +
			"on its way to you. sealpost checked no signature on it.");
		return status;
	}
	if (dec.state === "failed") {
		status.title = dec.reason ? `Could not decrypt this message (${dec.reason})` :
			"Could not decrypt this message";
		status.tone = "bad";
		status.details.push("This message is encrypted, but sealpost could not decrypt it" +
			(dec.reason ? `: ${dec.reason}.` : "."));
		if (dec.reason && /locked/i.test(dec.reason))
			status.details.push("Unlock your key in the sealpost settings (Keys \u2192 Unlock), then open the message again.");
		else if (dec.reason && /no secret key/i.test(dec.reason))
			status.details.push("It was encrypted to a key whose secret part sealpost does not have. " +
				"If you have that key elsewhere, import it in the sealpost settings.");
		return status;
	}
	if (dec.state === "unreadable") {
		status.title = "Could not decrypt: sealpost's status for this message is unreadable";
		status.tone = "warning";
		status.details.push("The message carries a decryption status sealpost does not write. " +
			"Treat it as not encrypted and not signed.");
		return status;
	}

	const mismatchValues = headerValues(headers, "x-sealpost-from-mismatch");
	if (mismatchValues.length > 0)
		status.fromMismatch = cleanText(mismatchValues.join(", ")) || "yes";

	const sig = parseSignature(headerValues(headers, "x-sealpost-signature"));
	status.signature = sig;
	const fpr = sig.fingerprint ? formatFingerprint(sig.fingerprint) : null;
	status.details.push("This message was encrypted: only you (and other recipients) could read it on its way.");
	const ver = sig.kind === "good" || sig.kind === "mismatch" || sig.kind === "partial" || sig.kind === "unknown-key" ?
		verificationOf(keyInfo) : null;
	status.verification = ver ? ver.state : null;
	switch (sig.kind) {
	case "good": {
		const who = sig.address || sig.userId || `the key ${fpr}`;
		const words = verificationWords(ver, who);
		status.title = `Decrypted and signed by ${who}${words.suffix}`;
		status.tone = ver.state === "verified" ? "good" : ver.state === "rejected" ? "bad" : "neutral";
		status.details.push(`It is signed by ${sig.userId || who}: the signature is correct, so ` +
			"the message was not changed after it was signed.");
		status.details.push(words.line);
		status.details.push(`Key fingerprint: ${fpr}`);
		break;
	}
	case "none":
		status.title = "Decrypted, not signed";
		status.details.push("It is not signed, so nothing proves who wrote it.");
		break;
	case "mismatch": {
		const who = sig.address || sig.userId || "someone else";
		status.title = `Decrypted; the signature is from ${who}, not from the sender`;
		status.tone = "warning";
		status.details.push(`It is signed with a key of ${sig.userId || who}, but that key has no ` +
			"address matching the sender shown in From. Be careful: someone may pretend to be the sender.");
		status.details.push(verificationWords(ver, who).line);
		status.details.push(`Key fingerprint: ${fpr}`);
		break;
	}
	case "unknown-key":
		status.title = "Decrypted; the signature could not be checked (unknown key)";
		status.details.push("It is signed, but sealpost does not have the signer's key, so the " +
			"signature could not be checked. Import the sender's key to check it.");
		status.details.push(`Signing key: ${fpr}`);
		break;
	case "partial":
		status.title = "Decrypted; only part of the message is signed";
		status.tone = "warning";
		status.details.push("Only part of the message is signed: text outside that part may have " +
			"been added by someone else.");
		status.details.push(`Signing key: ${fpr}`);
		break;
	case "bad":
		status.title = "Decrypted, but the signature is bad";
		status.tone = "bad";
		status.details.push("The signature does not match" + (sig.why ? ` (${sig.why})` : "") +
			": the message may have been changed, or the signing key is revoked or expired. Do not trust it.");
		break;
	default:
		status.title = "Decrypted; the signature status is unreadable";
		status.tone = "warning";
		status.details.push("The signature status is not one sealpost writes. Treat the message as not signed.");
		break;
	}
	if (status.fromMismatch) {
		status.title += " (sender differs from the envelope)";
		if (status.tone === "good" || status.tone === "neutral")
			status.tone = "warning";
		status.details.push(`The sender inside the encrypted message differs from the one outside ` +
			`(${status.fromMismatch}). The inside one is shown.`);
	}
	return status;
}

/* keyInfo for statusFromHeaders from a list of keys (GET /api/v1/keys). */
export function keyInfoFromKeys(keys, fingerprint) {
	if (!Array.isArray(keys) || typeof fingerprint !== "string")
		return { state: "missing" };
	const want = fingerprint.toUpperCase();
	for (const k of keys) {
		const f = k && typeof k.fingerprint === "string" ? k.fingerprint.toUpperCase() : "";
		if (f !== "" && (f === want || (want.length < f.length && f.endsWith(want))))
			return { state: "found", acceptance: k.acceptance, own: k.own === true };
	}
	return { state: "missing" };
}
