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
  const earlierNote = document.getElementById("earlier-note");
  const watchers = document.getElementById("watchers");
  const announcer = document.getElementById("announcer");
  const copyButton = document.getElementById("copy-curl");
  const accessPath = body.dataset.accessPath;
  const tokensAccepted = body.dataset.tokensAccepted === "true";
  const tokenForm = document.getElementById("token-form");
  const accessSummary = document.getElementById("access-summary");
  const publishDenied = document.getElementById("publish-denied");
  const CLOSE_TOKEN_EXPIRED = 4401; // the server's close code when the token runs out
  const emptyText = document.getElementById("empty").textContent;

  // The token lives in a session cookie for this server only: the
  // WebSocket, the form and EventSource send it without the page putting
  // it in a URL, and it is gone when the browser closes.
  const token = {
    set(value) {
      const secure = location.protocol === "https:" ? "; Secure" : "";
      document.cookie = `${body.dataset.tokenCookie}=${encodeURIComponent(value)}; path=/; SameSite=Strict${secure}`;
    },
    forget() {
      document.cookie = `${body.dataset.tokenCookie}=; path=/; max-age=0; SameSite=Strict`;
    },
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
      list.classList.remove("earlier");
      earlierNote.hidden = true;
    });
    current.addEventListener("message", (event) => receive(event.data));
    current.addEventListener("close", async (event) => {
      if (socket !== current || hidden) {
        return; // closed on purpose; pageshow reconnects
      }
      socket = null;
      watchers.textContent = "–";
      if (event.code === CLOSE_TOKEN_EXPIRED) {
        await refreshAccess(); // the Access card then says when it expired
        setState("waiting", "Token expired");
        askForToken("Your token expired. Enter a new one to keep watching; the page catches up on what it missed.");
        return;
      }
      failures += 1;
      // A handshake the server refused may be the token's doing: ask
      // the server, rather than retrying a token that cannot work.
      if (tokensAccepted && failures >= 2 && !(await refreshAccess()).read) {
        return;
      }
      if (socket !== null || hidden || retryTimer !== null) {
        return; // a new token or the page's return reconnected meanwhile
      }
      const delay = retryDelay(failures - 1);
      setState("reconnecting", `Reconnecting in ${Math.ceil(delay / 1000)} s…`);
      retryTimer = setTimeout(connect, delay);
    });
  }

  // What the current token (or none) may do here, from the server: shown
  // in the Access card, and used to stop a refused page from retrying.
  // It returns {read, write} for this page's topic.
  async function refreshAccess() {
    const url = new URL(accessPath, location.href);
    url.searchParams.set("topic", topic);
    let response;
    let reply = {};
    try {
      response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
      reply = await response.json();
    } catch {
      return { read: true, write: true }; // the server is away: keep trying
    }
    if (!response.ok) {
      stopWatching();
      accessSummary.textContent = sentence(reply.error || `The server refused the token (${response.status}).`);
      accessSummary.classList.add("error");
      setState("waiting", "Needs a valid token");
      askForToken(reply.error || "The token is not valid here.");
      allowPublishing(false, "Publishing needs a valid token.");
      return { read: false, write: false };
    }
    accessSummary.classList.remove("error");
    accessSummary.replaceChildren(...describeAccess(reply));
    const here = reply.topic || { read: true, write: true };
    const who = reply.kind === "anonymous" ? "Without a token, you" : `The token “${reply.name}”`;
    allowPublishing(here.write, `${who} cannot publish to “${topic}”.`);
    // The terminal command needs a token wherever this page uses one or
    // anyone without one may not publish; the page never shows the token.
    const withToken = reply.kind !== "anonymous" || !here.write;
    curlExample.textContent = `curl ${withToken ? "-H 'Authorization: Bearer TOKEN' " : ""}'${notifyURL.href}'`;
    if (!here.read) {
      stopWatching();
      setState("waiting", "Not allowed");
      empty.hidden = false;
      empty.textContent = `${who} cannot watch “${topic}”.${reply.kind === "anonymous" ? " Use a token that covers it." : " Ask for a token that covers it."}`;
      askForToken("");
    }
    return here;
  }

  // Once the server says this browser may not watch, the page lets go of
  // its connection, which was let in with the token it had before, and
  // sets what it showed then apart, so that nothing under "cannot watch"
  // looks live. A token that may watch resumes after the newest of them.
  function stopWatching() {
    if (socket !== null) {
      const old = socket;
      socket = null;
      old.close(1000, "not allowed");
    }
    clearTimeout(retryTimer);
    retryTimer = null;
    watchers.textContent = "–";
    list.classList.toggle("earlier", received > 0);
    earlierNote.hidden = received === 0;
  }

  // sentence starts the server's message, written to follow a colon, with
  // a capital letter.
  function sentence(text) {
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  // describeAccess lists what the token covers, as nodes (never HTML).
  function describeAccess(reply) {
    const nodes = [];
    const who = document.createElement("span");
    who.textContent = reply.kind === "anonymous"
      ? "No token: this browser has what anyone has."
      : `Token “${reply.name}”${reply.kind === "jwt" ? " (JWT)" : ""}${reply.expires ? `, valid until ${dateTimeFormat.format(new Date(reply.expires))}` : ""}.`;
    nodes.push(who);
    for (const [label, patterns] of [["Watch", reply.read], ["Publish", reply.write]]) {
      const line = document.createElement("ul");
      line.className = "scopes";
      const name = document.createElement("li");
      name.className = "label";
      name.textContent = `${label}:`;
      line.append(name);
      for (const pattern of patterns.length ? patterns : ["nothing"]) {
        const item = document.createElement("li");
        item.textContent = pattern === "*" ? "every topic" : pattern;
        line.append(item);
      }
      nodes.push(line);
    }
    return nodes;
  }

  function allowPublishing(allowed, why) {
    for (const control of [input, form.querySelector("button")]) {
      control.disabled = !allowed;
    }
    publishDenied.hidden = allowed;
    publishDenied.textContent = allowed ? "" : why;
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
    // For notify.js, which tells a person who is not looking.
    document.dispatchEvent(new CustomEvent("herald:message", { detail: { id: frame.id, text: frame.msg } }));
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
      const response = await fetch(notifyPath, { method: "POST", headers, body: JSON.stringify({ msg, topic }) });
      const reply = await response.json().catch(() => ({}));
      if (response.status === 401 || response.status === 403) {
        askForToken(reply.error || "Publishing here needs a token.");
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
      button.disabled = input.disabled;
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

  // A new token: check it, and reconnect with it if it may watch; the
  // page resumes after the last message it showed.
  async function useToken() {
    const access = await refreshAccess();
    if (!access.read) {
      return;
    }
    tokenForm.hidden = true;
    if (socket !== null) {
      const old = socket;
      socket = null;
      old.close(1000, "new token");
    }
    clearTimeout(retryTimer);
    failures = 0;
    empty.textContent = emptyText;
    empty.hidden = received > 0;
    connect();
  }

  if (tokenForm) {
    document.getElementById("change-token").addEventListener("click", () => {
      tokenForm.hidden = !tokenForm.hidden;
      if (!tokenForm.hidden) {
        document.getElementById("token").focus();
      }
    });
    document.getElementById("forget-token").addEventListener("click", () => {
      token.forget();
      document.getElementById("token").value = "";
      useToken();
    });
    tokenForm.addEventListener("submit", (event) => {
      event.preventDefault();
      token.set(document.getElementById("token").value.trim());
      useToken();
    });
  }

  if (tokensAccepted) {
    refreshAccess().then((access) => {
      if (access.read) {
        connect();
      }
    });
  } else {
    connect();
  }
})();
