// background: sets the message display action's title to the status of the
// shown message, in every tab, whenever a message is displayed.

import { SealpostApi } from "./console/api.js";
import { loadPairing, makeApi, isPairingKey } from "./lib/pairing.js";
import { updateDisplayedTab, updateAllTabs } from "./lib/display.js";

async function currentApi() {
	const pairing = await loadPairing(messenger.storage.local);
	return makeApi(pairing, SealpostApi, (...args) => fetch(...args));
}

messenger.messageDisplay.onMessagesDisplayed.addListener(async (tab, displayed) => {
	try {
		await updateDisplayedTab(messenger, await currentApi(), tab, displayed);
	} catch (e) {
		console.error("sealpost: status of the displayed message:", e);
	}
});

messenger.storage.onChanged.addListener(async (changes, area) => {
	if (area === "local" && isPairingKey(changes))
		await updateAllTabs(messenger, await currentApi());
});

currentApi().then((api) => updateAllTabs(messenger, api)).catch((e) => {
	console.error("sealpost: start:", e);
});
