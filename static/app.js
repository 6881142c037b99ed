// Herald's subscriber page: one WebSocket in JSON mode that reconnects by
// itself and resumes after the last message it saw, a live list of messages
// (newest first), and a publish form that works with or without this script.
(() => {
  "use strict";

  const RETRY_MIN_MS = 500;      // first reconnect delay
  const RETRY_MAX_MS = 30000;    // reconnect delays never grow past this
  const MAX_SHOWN = 500;         // older messages leave the list, so the page never grows without end

  const body = document.body;
  const wsPath = body.dataset.wsPath;
  const notifyPath = body.dataset.notifyPath;
  const topic = body.dataset.topic;
  const lostNotice = document.getElementById("lost-notice");
  const watchers = document.getElementById("watchers");
  const announcer = document.getElementById("announcer");
  const copyButton = document.getElementById("copy-curl");
  const tokenForm = document.getElementById("token-form");
  const needsSubscribeToken = body.dataset.subscribeTokenRequired === "true";
  const needsPublishToken = body.dataset.publishTokenRequired === "true";

  // Tokens live in sessionStorage: this tab only, gone when it closes.
  const tokens = {
    get: (kind) => sessionStorage.getItem(`herald.${kind}Token`) || "",
    set: (kind, value) => sessionStorage.setItem(`herald.${kind}Token`, value),
  };
  const statusText = document.getElementById("status-text");
  const list = document.getElementById("messages");
  const empty = document.getElementById("empty");
  const receivedCount = document.getElementById("received-count");
  const form = document.getElementById("publish-form");
  const input = document.getElementById("msg");
  const result = document.getElementById("publish-result");
  const curlExample = document.getElementById("curl-example");
  // Today's messages show the time; older ones, such as history replayed
  // from yesterday, the date too. The full date and time is in the tooltip.
  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const dateTimeFormat = new Intl.DateTimeFormat(undefined,
    { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
  const sameDay = (a, b) => a.toDateString() === b.toDateString();

  let received = 0;
  let failures = 0;     // consecutive connection attempts that did not go live
  let retryTimer = null;
  // The id of the newest message shown, as a string (ids are 64-bit). null
  // until the first connection: that one asks for everything kept.
  let lastId = null;

  const notifyURL = new URL(notifyPath, location.href);
  if (topic !== "default") {
    notifyURL.searchParams.set("topic", topic);
  }
  notifyURL.searchParams.set("msg", "HelloWorld");
  curlExample.textContent = `curl '${notifyURL.href}'`;
  if (navigator.clipboard) {
    copyButton.hidden = false;
    copyButton.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(curlExample.textContent);
        copyButton.textContent = "Copied";
      } catch {
        copyButton.textContent = "Select the command to copy it";
      }
      setTimeout(() => { copyButton.textContent = "Copy command"; }, 2000);
    });
  }

  function setState(state, text) {
    body.dataset.state = state;
    statusText.textContent = text;
  }

  // Every connection resumes: the first asks for all the history the
  // server keeps, each later one for what came after the last message shown.
  function socketURL() {
    const url = new URL(wsPath, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("topic", topic);
    url.searchParams.set("format", "json");
    url.searchParams.set("presence", "1");
    url.searchParams.set("since", lastId === null ? "0" : lastId);
    if (needsSubscribeToken) {
      url.searchParams.set("token", tokens.get("subscribe")); // browsers cannot set WebSocket headers
    }
    return url.href;
  }

  // Exponential backoff with jitter: every client waits a different while,
  // so a restarted server is not hit by all of them at once.
  function retryDelay(attempt) {
    const ceiling = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** attempt);
    return Math.round(ceiling / 2 + Math.random() * ceiling / 2);
  }

  let socket = null;     // the current connection, if any
  let hidden = false;    // the page is in the back/forward cache

  function connect() {
    retryTimer = null;
    setState(failures === 0 ? "connecting" : "reconnecting", failures === 0 ? "Connecting…" : "Reconnecting…");
    const current = new WebSocket(socketURL());
    socket = current;
    current.addEventListener("open", () => {
      failures = 0;
      setState("live", "Live");
    });
    current.addEventListener("message", (event) => receive(event.data));
    current.addEventListener("close", () => {
      if (socket !== current || hidden) {
        return; // closed on purpose; pageshow reconnects
      }
      socket = null;
      watchers.textContent = "–";
      const delay = retryDelay(failures);
      failures += 1;
      if (needsSubscribeToken && failures >= 2) {
        askForToken("The server did not accept the connection. If the token is wrong, correct it; Herald keeps trying meanwhile.");
      }
      setState("reconnecting", `Reconnecting in ${Math.ceil(delay / 1000)} s…`);
      retryTimer = setTimeout(connect, delay);
    });
  }

  // A page kept in the back/forward cache would hold its connection open,
  // frozen, and count as a watcher: let go of it, and resume on return.
  window.addEventListener("pagehide", () => {
    hidden = true;
    clearTimeout(retryTimer);
    retryTimer = null;
    if (socket !== null) {
      socket.close(1000, "page hidden");
      socket = null;
    }
  });
  window.addEventListener("pageshow", (event) => {
    hidden = false;
    if (event.persisted && socket === null) {
      connect();
    }
  });

  // A network that comes back is worth trying at once.
  window.addEventListener("online", () => {
    if (retryTimer !== null && !hidden) {
      clearTimeout(retryTimer);
      connect();
    }
  });

  function receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return; // not from Herald's JSON mode
    }
    if (frame.type === "lost") {
      warnLost(frame.count);
      return;
    }
    if (frame.type === "presence") {
      watchers.textContent = String(frame.subscribers);
      return;
    }
    // A resumed stream starts after lastId, so this only guards the list.
    if (lastId !== null && BigInt(frame.id) <= BigInt(lastId)) {
      return;
    }
    lastId = frame.id;
    show(frame.msg, new Date(frame.time));
  }

  function warnLost(count) {
    const what = count === null
      ? "Some messages may be missing: the server's history no longer goes back to the last message shown here (it may have restarted)."
      : `${count} message${count === 1 ? " was" : "s were"} published while this page was away and ${count === 1 ? "is" : "are"} no longer kept by the server.`;
    lostNotice.textContent = what;
    lostNotice.hidden = false;
  }

  function show(text, at) {
    const item = document.createElement("li");
    item.className = "fresh";
    const time = document.createElement("time");
    time.dateTime = at.toISOString();
    time.textContent = (sameDay(at, new Date()) ? timeFormat : dateTimeFormat).format(at);
    time.title = fullFormat.format(at);
    const span = document.createElement("span");
    span.className = "text";
    span.textContent = text; // never HTML: a message shows exactly as sent
    item.append(time, span);
    list.prepend(item);
    while (list.childElementCount > MAX_SHOWN) {
      list.lastElementChild.remove();
    }
    received += 1;
    receivedCount.textContent = String(received);
    empty.hidden = true;
    announce(text);
  }

  // Screen readers hear one summary per burst (a replay of history, a
  // flurry of publishes) rather than every message read out in turn.
  let pendingAnnouncements = 0;
  let latestText = "";
  let announceTimer = null;
  function announce(text) {
    pendingAnnouncements += 1;
    latestText = text;
    if (announceTimer === null) {
      announceTimer = setTimeout(() => {
        announcer.textContent = pendingAnnouncements === 1
          ? `New message: ${latestText}`
          : `${pendingAnnouncements} new messages. Latest: ${latestText}`;
        pendingAnnouncements = 0;
        announceTimer = null;
      }, 400);
    }
  }

  function report(text, isError) {
    result.textContent = text;
    result.classList.toggle("error", isError);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const msg = input.value;
    if (msg === "") {
      report("Type a message first.", true);
      return;
    }
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const headers = { "Content-Type": "application/json", Accept: "application/json" };
      if (needsPublishToken) {
        headers.Authorization = `Bearer ${tokens.get("publish")}`;
      }
      const response = await fetch(notifyPath, { method: "POST", headers, body: JSON.stringify({ msg, topic }) });
      const reply = await response.json().catch(() => ({}));
      if (response.status === 401) {
        askForToken(reply.error || "Publishing needs a token.");
      }
      if (!response.ok) {
        throw new Error(reply.error || `${response.status} ${response.statusText}`);
      }
      input.value = "";
      const n = reply.subscribers;
      report(`Published to ${n} subscriber${n === 1 ? "" : "s"}.`, false);
    } catch (err) {
      report(`Not published: ${err.message}`, true);
    } finally {
      button.disabled = false;
      input.focus();
    }
  });

  function askForToken(problem) {
    if (!tokenForm) {
      return;
    }
    document.getElementById("token-problem").textContent = problem;
    tokenForm.hidden = false;
  }

  if (tokenForm) {
    tokenForm.addEventListener("submit", (event) => {
      event.preventDefault();
      for (const kind of ["subscribe", "publish"]) {
        const field = document.getElementById(`${kind}-token`);
        if (field) {
          tokens.set(kind, field.value.trim());
        }
      }
      tokenForm.hidden = true;
      if (socket === null) {
        clearTimeout(retryTimer);
        failures = 0;
        connect();
      } else if (needsSubscribeToken) {
        socket.close(); // reconnect with the new token
      }
    });
  }

  if (needsSubscribeToken && tokens.get("subscribe") === "") {
    setState("connecting", "Waiting for a token");
    askForToken("");
  } else {
    connect();
  }
})();
