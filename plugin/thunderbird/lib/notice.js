// notice: one sentence on why the add-on could not talk to sealpost, from a
// SealpostApiError's kind (or any other error). Pure: no browser API.

/* The kind of an error thrown by an API call: the SealpostApiError kinds, or
 * "unreachable" for errors from fetch itself. */
export function errorKind(err) {
	const k = err && typeof err.kind === "string" ? err.kind : null;
	if (k === "unreachable" || k === "unauthorized" || k === "forbidden" || k === "bad-request" ||
	    k === "server" || k === "not-paired")
		return k;
	if (err && typeof err.status === "number") {
		if (err.status === 401)
			return "unauthorized";
		if (err.status === 403)
			return "forbidden";
		if (err.status >= 400 && err.status < 500)
			return "bad-request";
		return "server";
	}
	return "unreachable";
}

function oneLine(s) {
	return String(s == null ? "" : s).replace(/[\u0000-\u001f\u007f]/g, " ").slice(0, 300).trim();
}

/* {kind, title, text}: what to show the user. base is the API URL tried. */
export function noticeFor(errOrKind, base) {
	const kind = typeof errOrKind === "string" ? errOrKind : errorKind(errOrKind);
	const where = base ? ` at ${base}` : "";
	const message = typeof errOrKind === "object" && errOrKind !== null ? oneLine(errOrKind.message) : "";
	switch (kind) {
	case "not-paired":
		return { kind, title: "Not paired with sealpost",
			text: "The add-on is not paired with sealpost yet. Open the add-on's settings, run " +
				"\"sealpost pair\" in a terminal and paste the token it prints." };
	case "unreachable":
		return { kind, title: "sealpost is not reachable",
			text: `sealpost does not answer${where}. Check that sealpost is running and that its ` +
				"configuration sets api_listen to this address and port." };
	case "unauthorized":
		return { kind, title: "The token is wrong",
			text: "sealpost refused the add-on's token. Run \"sealpost pair\" again and paste the " +
				"token it prints into the add-on's settings." };
	case "forbidden":
		return { kind, title: "sealpost refused the add-on",
			text: "sealpost refused the request from the add-on. Use the address sealpost listens on " +
				"(127.0.0.1, localhost or [::1] with the api_listen port)." + (message ? ` (${message})` : "") };
	case "bad-request":
		return { kind, title: "sealpost did not accept the request",
			text: message || "sealpost did not accept the request." };
	default:
		return { kind: "server", title: "sealpost had a problem",
			text: message || "sealpost could not do it; its log says why." };
	}
}
