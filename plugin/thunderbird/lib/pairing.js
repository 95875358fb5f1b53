// pairing: the API URL and token the add-on keeps in storage.local, and the
// one API client made from them. Pure but for the storage object passed in.

export const DEFAULT_BASE = "http://127.0.0.1:7587";
const STORAGE_KEY = "pairing";

/* The add-on may reach loopback only (its host permissions say so). */
const LOOPBACK_HOST = /^(127(?:\.\d{1,3}){3}|localhost|\[::1\])$/i;

/* {base} for a URL as typed or pasted ("http://127.0.0.1:7587/api/v1/" too),
 * or {error}. */
export function normalizeBase(input) {
	const s = typeof input === "string" ? input.trim() : "";
	if (s === "")
		return { base: DEFAULT_BASE };
	let url;
	try {
		url = new URL(s);
	} catch (e) {
		return { error: "The API URL is not a URL; it looks like " + DEFAULT_BASE + "." };
	}
	if (url.protocol !== "http:")
		return { error: "The API URL starts with http:// (sealpost's API speaks plain HTTP on loopback)." };
	if (!LOOPBACK_HOST.test(url.hostname))
		return { error: "The API URL must name this computer: 127.0.0.1, localhost or [::1]." };
	if (url.username || url.password || url.search || url.hash)
		return { error: "The API URL is just http://HOST:PORT." };
	const path = url.pathname.replace(/\/+$/, "");
	if (path !== "" && path !== "/api/v1")
		return { error: "The API URL is just http://HOST:PORT." };
	return { base: `http://${url.host}` };
}

/* {token} from what was pasted ("token 6de1..." or the bare hex), or {error}. */
export function normalizeToken(input) {
	let s = typeof input === "string" ? input.trim() : "";
	s = s.replace(/^token\s+/i, "").replace(/^"|"$/g, "").trim();
	if (!/^[0-9a-fA-F]{64}$/.test(s))
		return { error: "The token is the 64 hexadecimal digits that \"sealpost pair\" prints after \"token\"." };
	return { token: s.toLowerCase() };
}

/* {base, token} or null when not paired. */
export async function loadPairing(storage) {
	const got = await storage.get(STORAGE_KEY);
	const p = got ? got[STORAGE_KEY] : null;
	if (!p || typeof p.base !== "string" || typeof p.token !== "string")
		return null;
	return { base: p.base, token: p.token };
}

export async function savePairing(storage, pairing) {
	await storage.set({ [STORAGE_KEY]: { base: pairing.base, token: pairing.token } });
}

export async function clearPairing(storage) {
	await storage.remove(STORAGE_KEY);
}

/* The API client for pairing (null when not paired). */
export function makeApi(pairing, ApiClass, fetchFn) {
	if (!pairing)
		return null;
	return new ApiClass({ base: pairing.base, token: pairing.token, fetch: fetchFn });
}

/* The origins the manifest asks for; the options page checks them. */
export const API_ORIGINS = ["http://127.0.0.1/*", "http://localhost/*", "http://[::1]/*"];

export function isPairingKey(changes) {
	return changes != null && Object.prototype.hasOwnProperty.call(changes, STORAGE_KEY);
}
