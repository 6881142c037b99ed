// Herald's service worker: it shows each Web Push message as a
// notification, and a click on one brings up the page of its topic. Its
// scope is the folder of the static files, so it controls no page and sees
// no request: it only wakes for pushes and clicks.
"use strict";

// The page's path (paths.page, which config can move) comes with this
// script's URL as ?page=, since a worker has no page to read it from.
const pagePath = new URL(self.location.href).searchParams.get("page") || "/";
const icon = new URL("icon-192.png", self.location.href).href;

// The page of a topic, as the page itself links it: the default topic at
// the page's path alone.
function topicPage(topic) {
  const url = new URL(pagePath, self.location.origin);
  if (topic !== "default") {
    url.searchParams.set("topic", topic);
  }
  return url;
}

function showsTopic(href, topic) {
  const url = new URL(href);
  return url.origin === self.location.origin && url.pathname === topicPage(topic).pathname &&
    (url.searchParams.get("topic") || "default") === topic;
}

// Notifications are shown one after another, in the order the pushes came:
// each loads its icon first, and they would otherwise finish in any order,
// leaving an older message showing in place of a newer one.
let showing = Promise.resolve();

self.addEventListener("push", (event) => {
  // The server sends {topic, id, text, time}; anything else still shows.
  let message;
  try {
    message = event.data ? event.data.json() : {};
  } catch {
    message = { text: event.data.text() };
  }
  const topic = typeof message.topic === "string" && message.topic !== "" ? message.topic : "default";
  const sent = Date.parse(message.time);
  const shown = showing.then(() => self.registration.showNotification(topic, {
    body: typeof message.text === "string" ? message.text : "",
    icon,
    // One notification per topic: a burst replaces it rather than piling up.
    tag: topic,
    timestamp: Number.isNaN(sent) ? Date.now() : sent,
    data: { topic, id: message.id === undefined ? null : String(message.id) },
  }));
  showing = shown.catch(() => {});
  event.waitUntil(shown);
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const topic = event.notification.data?.topic || "default";
  event.waitUntil((async () => {
    // The page is not under this worker's scope: ask for every window.
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const open = windows.find((client) => showsTopic(client.url, topic));
    if (open) {
      await open.focus();
      return;
    }
    await self.clients.openWindow(topicPage(topic).href);
  })());
});
