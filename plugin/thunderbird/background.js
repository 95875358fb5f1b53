// background: sets the message display action's title to the status of the
// shown message, in every tab, whenever a message is displayed; and keeps the
// compose action's badge and title of every compose tab up to date with
// sealpost's recipients check, stopping a send sealpost would refuse.

import { SealpostApi } from "./console/api.js";
import { loadPairing, makeApi, isPairingKey } from "./lib/pairing.js";
import { updateDisplayedTab, updateAllTabs } from "./lib/display.js";
import { createComposeWatch, CHANGED_MESSAGE } from "./lib/watch.js";

async function currentApi() {
	const pairing = await loadPairing(messenger.storage.local);
	return makeApi(pairing, SealpostApi, (...args) => fetch(...args));
}

const watch = createComposeWatch(messenger, currentApi);

messenger.messageDisplay.onMessagesDisplayed.addListener(async (tab, displayed) => {
	try {
		await updateDisplayedTab(messenger, await currentApi(), tab, displayed);
	} catch (e) {
		console.error("sealpost: status of the displayed message:", e);
	}
});

messenger.storage.onChanged.addListener(async (changes, area) => {
	if (area === "local" && isPairingKey(changes)) {
		await updateAllTabs(messenger, await currentApi());
		await watch.refreshAll({ force: true });
	}
});

/* Compose tabs: checked when they open, when their state or identity
 * changes, when the popup changes the choice, and by a light poll. */
messenger.tabs.onCreated.addListener((tab) => {
	if (tab && tab.type === "messageCompose")
		watch.track(tab.id);
});
messenger.tabs.onRemoved.addListener((tabId) => watch.untrack(tabId));
messenger.compose.onComposeStateChanged.addListener((tab) => watch.refresh(tab.id));
messenger.compose.onIdentityChanged.addListener((tab) => watch.refresh(tab.id, { force: true }));
messenger.compose.onBeforeSend.addListener((tab, details) => watch.beforeSend(tab, details));
messenger.runtime.onMessage.addListener((message) => {
	if (message && message.type === CHANGED_MESSAGE && typeof message.tabId === "number")
		watch.refresh(message.tabId, { force: true });
});

async function composeTabs() {
	try {
		return await messenger.tabs.query({ type: "messageCompose" });
	} catch (e) {
		return (await messenger.tabs.query({})).filter((t) => t.type === "messageCompose");
	}
}

currentApi().then((api) => updateAllTabs(messenger, api)).catch((e) => {
	console.error("sealpost: start:", e);
});
composeTabs().then((list) => { for (const t of list) watch.track(t.id); }).catch((e) => {
	console.error("sealpost: compose tabs at start:", e);
});
