// Guardyn web app UI. All crypto, keys and storage are in the WebAssembly client
// (apps/web/wasm), reached through globalThis.guardyn; this file only renders. It never
// builds HTML from strings: text goes in through textContent (the page enforces Trusted
// Types, so an innerHTML mistake would throw rather than run).
"use strict";

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const show = (id, on) => { $(id).hidden = !on; };

const state = {
  me: null,
  peer: null,          // the open conversation
  convs: new Map(),    // peer -> {last, at}
  msgs: new Map(),     // message id -> <li> of the open conversation
  changed: new Set(),  // peers whose keys changed
  typingTimer: 0,
  lastTyping: 0,
};

// The states the connection line shows; data-state is what tests and styles key on.
function setConn(st, text) {
  const c = $("conn");
  c.dataset.state = st;
  c.textContent = text;
}

function fatal(title, text) {
  $("fatal-title").textContent = title;
  $("fatal-text").textContent = text;
  document.body.dataset.fatal = "1";
  show("fatal", true);
  show("welcome", false);
  show("app", false);
  setConn("fatal", title);
}

// Why a call failed, in words for the user, by the client's stable code.
function explain(err) {
  const code = (err && err.code) || "error";
  const words = {
    "wrong-passphrase": "Wrong passphrase.",
    "no-profile": "There is no such account in this browser.",
    "profile-exists": "That account is already set up in this browser: unlock it instead.",
    "username-taken": "That username is taken.",
    "unknown-user": "No such user.",
    "bad-text": "This message cannot be sent: " + (err.message || ""),
    "identity-changed": "This contact's keys changed: compare safety numbers before sending.",
    "unavailable": "The server cannot be reached. Check your connection; try again.",
    "server-garbage": "The server sent an answer that makes no sense (it may be misconfigured, or something in between altered it). Nothing was changed.",
    "too-large-or-rate-limited": "The server refused: too large, or too many requests. Wait a moment.",
    "link-refused": "The link request was rejected or expired.",
    "self": "You cannot message your own account.",
  };
  return words[code] || ("Something went wrong: " + (err && err.message ? err.message : String(err)));
}

async function boot() {
  const meta = document.querySelector('meta[name="guardyn-wasm"]');
  setConn("loading", "Loading the app…");
  let module;
  try {
    const go = new Go();
    const resp = fetch(meta.content, { integrity: meta.dataset.integrity });
    module = await WebAssembly.instantiateStreaming(resp, go.importObject);
    const ready = new Promise((r) => addEventListener("guardyn-ready", r, { once: true }));
    go.run(module.instance).then(() => fatal("The app stopped", "Reload the page."));
    await ready;
  } catch (e) {
    // fetch rejects when the file does not match its integrity hash (a tampered or
    // truncated file, or a broken proxy), and instantiation when it is not WebAssembly.
    const integrity = e instanceof TypeError;
    fatal(integrity ? "The app's code failed its integrity check" : "The app's code could not be loaded",
      (integrity ? "The file the server sent is not the one this page was built with, so it was not run. " :
        "The file the server sent is not valid WebAssembly. ") +
      "Reload; if this persists, the server or something between you and it is altering files. (" + e.message + ")");
    return;
  }
  window.guardynUI = { ready: true };
  setConn("ready", "Ready");
  await showWelcome();
}

async function showWelcome() {
  show("welcome", true);
  show("app", false);
  show("lock", false);
  const profiles = await guardyn.profiles();
  const sel = $("unlock-user");
  sel.replaceChildren(...profiles.map((p) => { const o = el("option", "", p); o.value = p; return o; }));
  show("unlock-box", profiles.length > 0);
  (profiles.length ? $("unlock-pass") : $("reg-user")).focus();
}

function formBusy(form, busy) {
  for (const b of form.querySelectorAll("button, input, select, textarea")) b.disabled = busy;
}

async function submitting(form, errId, f) {
  $(errId).textContent = "";
  formBusy(form, true);
  try {
    await f();
  } catch (e) {
    $(errId).textContent = explain(e);
    $(errId).dataset.code = (e && e.code) || "error";
  } finally {
    formBusy(form, false);
  }
}

$("unlock-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  submitting(ev.target, "unlock-error", async () => {
    const me = await guardyn.open($("unlock-user").value, $("unlock-pass").value);
    $("unlock-pass").value = "";
    await enter(me);
  });
});

$("register-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  submitting(ev.target, "register-error", async () => {
    const me = await guardyn.register($("reg-user").value, $("reg-device").value, $("reg-pass").value);
    $("reg-pass").value = "";
    await enter(me);
  });
});

$("link-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  submitting(ev.target, "link-error", async () => {
    const req = await guardyn.startLink($("link-user").value, $("link-device").value, $("link-pass").value);
    $("link-pass").value = "";
    $("link-fingerprint").textContent = req.fingerprint;
    show("link-wait", true);
    const me = await guardyn.waitLink();
    show("link-wait", false);
    await enter(me);
  });
});

$("lock").addEventListener("click", async () => {
  await guardyn.lock();
  state.me = null;
  state.peer = null;
  $("messages").replaceChildren();
  await showWelcome();
});

async function enter(me) {
  state.me = me;
  show("welcome", false);
  show("app", true);
  show("lock", true);
  document.body.dataset.user = me.username;
  $("me").textContent = me.username + " · " + me.deviceName + " (device " + me.deviceId + ") · fingerprint " + me.fingerprint;
  await refreshConversations();
  setConn("connecting", "Connecting…");
  guardyn.listen(onEvent);
  $("new-peer").focus();
}

async function refreshConversations() {
  const list = await guardyn.conversations();
  for (const c of list) state.convs.set(c.peer, { last: c.last, at: c.at });
  renderConversations();
}

function renderConversations() {
  const items = [...state.convs.entries()].sort((a, b) => b[1].at - a[1].at).map(([peer, c]) => {
    const li = el("li");
    const b = el("button", "conv");
    b.type = "button";
    b.dataset.peer = peer;
    if (peer === state.peer) b.setAttribute("aria-current", "true");
    b.append(el("span", "conv-peer", peer), el("span", "conv-last", c.last || ""));
    if (state.changed.has(peer)) b.append(el("span", "badge", "keys changed"));
    b.addEventListener("click", () => openChat(peer));
    li.append(b);
    return li;
  });
  $("conversations").replaceChildren(...items);
}

$("new-chat").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const peer = $("new-peer").value.trim().toLowerCase();
  if (!peer) return;
  $("new-peer").value = "";
  if (!state.convs.has(peer)) state.convs.set(peer, { last: "", at: Date.now() });
  openChat(peer);
});

function time(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function messageItem(m) {
  const li = el("li", m.outgoing ? "msg out" : "msg in");
  li.dataset.id = m.id || "";
  li.append(el("p", "body", m.body));
  const meta = el("p", "meta");
  meta.append(el("time", "", time(m.sent)));
  if (m.outgoing) {
    const tick = el("span", "tick", m.delivered ? "Delivered" : (m.pending ? "Sending…" : "Sent"));
    tick.dataset.state = m.delivered ? "delivered" : (m.pending ? "sending" : "sent");
    meta.append(tick);
  }
  li.append(meta);
  return li;
}

async function openChat(peer) {
  state.peer = peer;
  state.msgs.clear();
  document.body.dataset.view = "chat";
  show("chat", true);
  show("safety", false);
  show("devices", false);
  $("chat-peer").textContent = peer;
  $("typing").textContent = "";
  $("composer-error").textContent = "";
  showKeyChange(peer);
  renderConversations();
  const history = await guardyn.history(peer);
  if (state.peer !== peer) return;
  const frag = document.createDocumentFragment();
  for (const m of history) {
    const li = messageItem(m);
    if (m.id) state.msgs.set(m.id, li);
    frag.append(li);
  }
  $("messages").replaceChildren(frag);
  scrollToEnd();
  $("composer-text").focus();
}

function scrollToEnd() {
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}

function showKeyChange(peer, text) {
  const on = state.changed.has(peer);
  show("keychange", on);
  if (on) {
    $("keychange-peer").textContent = peer;
    if (text) $("keychange-text").textContent = text;
  }
}

$("back").addEventListener("click", () => {
  document.body.dataset.view = "list";
  state.peer = null;
  show("chat", false);
  renderConversations();
});

function append(m) {
  if (m.id && state.msgs.has(m.id)) return;
  const list = $("messages");
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const li = messageItem(m);
  if (m.id) state.msgs.set(m.id, li);
  list.append(li);
  if (atEnd || m.outgoing) scrollToEnd();
}

function markDelivered(ref) {
  const li = state.msgs.get(ref);
  const tick = li && li.querySelector(".tick");
  if (tick) { tick.textContent = "Delivered"; tick.dataset.state = "delivered"; }
}

$("composer-text").addEventListener("input", () => {
  const text = $("composer-text").value;
  const why = text.length > 1000 ? guardyn.checkText(text) : "";
  if (why) {
    $("composer-error").textContent = "Too long to send: " + why;
    $("composer-error").dataset.code = "bad-text";
  } else if ($("composer-error").dataset.code === "bad-text") {
    $("composer-error").textContent = "";
    $("composer-error").dataset.code = "";
  }
  const now = Date.now();
  if (state.peer && text && now - state.lastTyping > 3000) {
    state.lastTyping = now;
    guardyn.typing(state.peer).catch(() => {});
  }
});

$("composer-text").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    $("composer").requestSubmit();
  }
});

$("composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  // Leading and trailing blank lines are never meant (a key repeat, an Enter that slipped).
  const text = $("composer-text").value.replace(/^\s*\n|\n\s*$/g, "");
  const peer = state.peer;
  const why = guardyn.checkText(text);
  if (why) {
    $("composer-error").textContent = "Cannot send: " + why;
    $("composer-error").dataset.code = "bad-text";
    return;
  }
  $("composer-error").textContent = "";
  $("composer-text").value = "";
  const pending = messageItem({ outgoing: true, body: text, sent: Date.now(), pending: true });
  $("messages").append(pending);
  scrollToEnd();
  try {
    const r = await guardyn.send(peer, text);
    pending.dataset.id = r.id;
    state.msgs.set(r.id, pending);
    const tick = pending.querySelector(".tick");
    tick.textContent = "Sent";
    tick.dataset.state = "sent";
    state.convs.set(peer, { last: text, at: r.sent });
    renderConversations();
  } catch (e) {
    pending.remove();
    $("composer-text").value = text;
    $("composer-error").textContent = explain(e);
    $("composer-error").dataset.code = e.code || "error";
    if (e.code === "identity-changed") {
      state.changed.add(peer);
      showKeyChange(peer, e.message);
    }
  }
});

function onEvent(ev) {
  switch (ev.kind) {
    case "message":
    case "file": {
      const body = ev.kind === "file" ? "File: " + (ev.fileName || "") + " (downloads come with the media work)" : ev.body;
      state.convs.set(ev.peer, { last: body, at: ev.sent });
      if (ev.peer === state.peer) {
        append({ id: ev.id, outgoing: ev.outgoing, body, sent: ev.sent });
        if (!ev.outgoing) $("typing").textContent = "";
      }
      renderConversations();
      break;
    }
    case "receipt":
      if (ev.peer === state.peer) markDelivered(ev.ref);
      break;
    case "typing":
      if (ev.peer === state.peer) {
        $("typing").textContent = ev.peer + " is typing…";
        clearTimeout(state.typingTimer);
        state.typingTimer = setTimeout(() => { $("typing").textContent = ""; }, 5000);
      }
      break;
    case "identity-changed":
      state.changed.add(ev.peer);
      if (!state.convs.has(ev.peer)) state.convs.set(ev.peer, { last: "", at: ev.received });
      renderConversations();
      if (ev.peer === state.peer) showKeyChange(ev.peer, ev.message);
      break;
    case "new-own-device":
      setConn("ready", "Connected · a new device was added to your account (fingerprint " + ev.fingerprint + ")");
      break;
    case "backlog-done":
    case "reconnected":
      setConn("online", "Connected");
      break;
    case "disconnected":
      $("conn").title = ev.message || "";
      setConn("offline", "Connection lost: reconnecting" + (ev.retryMs ? " in " + Math.round(ev.retryMs / 1000) + " s" : "") +
        ". Nothing is lost: messages wait on the server." + (ev.code === "server-garbage" ? " (The server answered garbage.)" : ""));
      break;
    case "undecryptable":
      if (ev.peer === state.peer) append({ outgoing: false, body: "A message could not be decrypted and was dropped.", sent: ev.received });
      break;
  }
}

async function openSafety(peer) {
  show("safety", true);
  $("safety-peer").textContent = peer;
  $("safety-number").textContent = "Computing…";
  show("safety-warning", false);
  show("safety-trust", false);
  $("safety-devices").replaceChildren();
  try {
    const sn = await guardyn.safetyNumber(peer);
    $("safety-number").textContent = sn.number;
    if (sn.changed) {
      state.changed.add(peer);
      $("safety-warning").textContent = "Warning: " + peer + "'s keys changed since you first talked. " +
        "Someone may be impersonating them, or they reinstalled. " + sn.warning;
      show("safety-warning", true);
      showKeyChange(peer, sn.warning);
    }
    for (const d of sn.newDevices || []) {
      $("safety-devices").append(el("li", "", "New device " + d.deviceId + ", fingerprint " + d.fingerprint));
    }
    show("safety-trust", sn.changed || (sn.newDevices || []).length > 0);
  } catch (e) {
    $("safety-number").textContent = explain(e);
  }
  $("safety-close").focus();
}

$("safety-open").addEventListener("click", () => openSafety(state.peer));
$("keychange-check").addEventListener("click", () => openSafety(state.peer));
$("safety-close").addEventListener("click", () => { show("safety", false); $("composer-text").focus(); });
$("safety-trust").addEventListener("click", async () => {
  const peer = $("safety-peer").textContent;
  await guardyn.trust(peer);
  state.changed.delete(peer);
  showKeyChange(peer);
  renderConversations();
  await openSafety(peer);
});

async function refreshLinks() {
  $("devices-error").textContent = "";
  try {
    const links = await guardyn.pendingLinks();
    $("links").replaceChildren(...links.map((l) => {
      const li = el("li", "link");
      li.append(el("span", "", l.deviceName + " — fingerprint "), el("span", "fingerprint", l.fingerprint));
      const b = el("button", "", "Approve " + l.deviceName);
      b.type = "button";
      b.dataset.link = l.id;
      b.addEventListener("click", async () => {
        try { await guardyn.approve(l.id); await refreshLinks(); } catch (e) { $("devices-error").textContent = explain(e); }
      });
      li.append(b);
      return li;
    }));
    if (!links.length) $("links").append(el("li", "hint", "No requests."));
  } catch (e) {
    $("devices-error").textContent = explain(e);
  }
}

$("devices-open").addEventListener("click", () => { show("devices", true); refreshLinks(); $("devices-refresh").focus(); });
$("devices-refresh").addEventListener("click", refreshLinks);
$("devices-close").addEventListener("click", () => show("devices", false));
$("fatal-reload").addEventListener("click", () => location.reload());

boot();
