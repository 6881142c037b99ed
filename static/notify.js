// The page for a person who is not looking at it: the "Notify me on this
// device" control, which registers this browser for the topic's Web Push
// notifications (shown by the service worker, sw.js, even with the page
// closed); a notification for each message while the page is open but
// hidden; and the count of unread messages in the title.
(() => {
  "use strict";

  const body = document.body;
  const topic = body.dataset.topic;
  const pushPath = body.dataset.pushPath;
  const staticPath = body.dataset.staticPath;
  const toggle = document.getElementById("notify-toggle");
  const state = document.getElementById("notify-state");
  const baseTitle = document.title;
  const icon = `${staticPath}/icon-192.png`;

  const canNotify = "Notification" in window;
  const canPush = canNotify && "serviceWorker" in navigator && "PushManager" in window;

  // The service worker lives with the static files and its scope is their
  // folder, the default: it needs no page of its own, only pushes and clicks.
  const worker = "serviceWorker" in navigator
    ? navigator.serviceWorker.register(`${staticPath}/sw.js?page=${encodeURIComponent(body.dataset.pagePath)}`)
      .then(activated)
      .catch(() => null)
    : Promise.resolve(null);

  // activated resolves once the registration has an active worker, which
  // subscribing and showing notifications need; null if it never gets one.
  function activated(registration) {
    const pending = registration.installing || registration.waiting;
    if (registration.active || !pending) {
      return registration.active ? registration : null;
    }
    return new Promise((resolve) => {
      pending.addEventListener("statechange", () => {
        if (pending.state === "activated" || pending.state === "redundant") {
          resolve(registration.active ? registration : null);
        }
      });
    });
  }

  // --- Unread count and notifications while the page is hidden ---

  let unread = 0;
  document.addEventListener("herald:message", (event) => {
    if (document.visibilityState !== "hidden") {
      return;
    }
    unread += 1;
    document.title = `(${unread}) ${baseTitle}`;
    notify(event.detail);
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      unread = 0;
      document.title = baseTitle;
    }
  });

  // notify shows a message as the service worker shows a push, tagged by
  // topic so that a burst replaces one notification. Where push is on for
  // this topic, the worker shows it: two would race to be the one left.
  // They are shown one after another, so that the newest is left showing:
  // each loads its icon first, and they would otherwise finish in any order.
  let showing = Promise.resolve();
  function notify({ id, text }) {
    if (!canNotify || Notification.permission !== "granted" || registered.has(topic)) {
      return;
    }
    const options = { body: text, icon, tag: topic, data: { topic, id } };
    showing = showing.then(async () => {
      const registration = await worker;
      if (registration) {
        await registration.showNotification(topic, options); // the only way on Android
      } else {
        new Notification(topic, options);
      }
    }).catch(() => {}); // the title still counts the message
  }

  // --- "Notify me on this device" ---

  // A browser has one push subscription per service worker; each topic
  // registered with the server uses it. These are the topics this browser
  // registered it for, so that turning one off keeps the others.
  const storageKey = `herald-push-topics:${pushPath}`;
  const registered = {
    all() {
      try {
        const topics = JSON.parse(localStorage.getItem(storageKey));
        return Array.isArray(topics) ? topics : [];
      } catch {
        return [];
      }
    },
    save(topics) {
      try {
        localStorage.setItem(storageKey, JSON.stringify(topics));
      } catch {
        // Storage is off: the state shows right until the page is reloaded.
      }
    },
    has(t) { return this.all().includes(t); },
    add(t) { this.save([...this.all().filter((x) => x !== t), t]); },
    remove(t) { this.save(this.all().filter((x) => x !== t)); },
  };

  const pushURL = new URL(pushPath, location.href);
  pushURL.searchParams.set("topic", topic);

  // The server's key, asked for once the page loads: its answer also says
  // whether the server sends notifications at all, and a click can then
  // ask for the permission at once, as some browsers allow only right
  // after the click.
  let keyAnswer = canPush ? askForKey() : null;

  async function askForKey() {
    try {
      const response = await fetch(new URL(`${pushPath}/key`, location.href), { headers: { Accept: "application/json" }, cache: "no-store" });
      const reply = await response.json().catch(() => ({}));
      if (response.ok && typeof reply.key === "string") {
        return { key: reply.key };
      }
      if (response.status === 404) {
        return { problem: "This server does not send notifications.", final: true };
      }
      return { problem: `The server cannot send notifications now: ${reply.error || `${response.status} ${response.statusText}`}` };
    } catch {
      return { problem: "The server could not be reached. Try again." };
    }
  }

  function show(on, message) {
    toggle.textContent = on ? "Stop notifications" : "Notify me on this device";
    toggle.dataset.on = String(on);
    state.classList.remove("error");
    state.textContent = message ?? (on ? `On: this device shows each new message in “${topic}”, even with the page closed.` : "");
  }

  function refuse(message) {
    state.textContent = message;
    state.classList.add("error");
  }

  async function send(method, json) {
    const response = await fetch(pushURL, {
      method,
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(json),
    });
    const reply = await response.json().catch(() => ({}));
    return { ok: response.ok, status: response.status, code: reply.code, error: reply.error || `${response.status} ${response.statusText}` };
  }

  function decodeKey(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(base64 + "=".repeat((4 - base64.length % 4) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  function sameKey(buffer, key) {
    const bytes = buffer ? new Uint8Array(buffer) : new Uint8Array();
    return bytes.length === key.length && bytes.every((b, i) => b === key[i]);
  }

  // subscription returns this browser's push subscription for the key,
  // making one if needed. One made for another key (the server's changed)
  // can no longer be used, nor can the topics registered with it.
  async function subscription(registration, key) {
    const existing = await registration.pushManager.getSubscription();
    if (existing && sameKey(existing.options.applicationServerKey, key)) {
      return existing;
    }
    if (existing) {
      await existing.unsubscribe();
      registered.save([]);
    }
    return registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  }

  async function turnOn() {
    let answer = await keyAnswer;
    if (!answer.key && !answer.final) {
      keyAnswer = askForKey();
      answer = await keyAnswer;
    }
    if (!answer.key) {
      refuse(answer.problem);
      return;
    }
    const permission = await Notification.requestPermission();
    if (permission === "denied") {
      refuse("Notifications are blocked for this site. Allow them in the browser's site settings, then try again.");
      return;
    }
    if (permission !== "granted") {
      refuse("Notifications were not allowed.");
      return;
    }
    const registration = await worker;
    if (!registration) {
      refuse("This browser could not start the page's service worker, which shows notifications.");
      return;
    }
    state.textContent = "Registering this device with the browser's push service…";
    let current;
    try {
      current = await subscription(registration, decodeKey(answer.key));
    } catch (err) {
      refuse(`This browser could not subscribe with its push service: ${err.message}`);
      return;
    }
    const reply = await send("POST", current.toJSON());
    if (!reply.ok) {
      if (registered.all().length === 0) {
        await current.unsubscribe();
      }
      if (reply.status === 404) {
        refuse("This server does not send notifications.");
      } else if (reply.code === "endpoint_not_allowed") {
        refuse("This server does not send notifications to this browser's push service.");
      } else {
        refuse(`The server did not take this device: ${reply.error}`);
      }
      return;
    }
    registered.add(topic);
    show(true);
  }

  async function turnOff() {
    const registration = await worker;
    const current = registration && await registration.pushManager.getSubscription();
    if (current) {
      const reply = await send("DELETE", { endpoint: current.endpoint });
      if (!reply.ok && reply.status !== 404) { // 404: the server has nothing to remove
        refuse(`The server did not stop the notifications: ${reply.error}`);
        return;
      }
    }
    registered.remove(topic);
    if (current && registered.all().length === 0) {
      await current.unsubscribe();
    }
    show(false);
  }

  async function start() {
    toggle.hidden = false;
    if (!canPush) {
      toggle.disabled = true;
      show(false, window.isSecureContext
        ? "This browser cannot show notifications from a page that is not open: it has no Web Push."
        : "Notifications need this page over https.");
      return;
    }
    toggle.addEventListener("click", async () => {
      toggle.disabled = true;
      try {
        await (toggle.dataset.on === "true" ? turnOff() : turnOn());
      } catch (err) {
        refuse(`That did not work: ${err.message}`);
      } finally {
        toggle.disabled = false;
      }
    });
    // Until the page knows whether this device is on, a click could only
    // do the wrong thing.
    toggle.disabled = true;
    const registration = registered.has(topic) && Notification.permission === "granted" ? await worker : null;
    const on = registration !== null && await registration.pushManager.getSubscription() !== null;
    if (!on) {
      registered.remove(topic);
    }
    show(on);
    toggle.disabled = false;
  }

  start();
})();
