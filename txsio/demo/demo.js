// The txsio demo chat (served by `twistd -n sio`; the handlers are txsio/demo/app.py).
// Plain browser JavaScript, no build step.
(function () {
  "use strict";

  // The official client's CDN copy, pinned to one file by its hash (the one socket.io's docs
  // publish; the same bytes as npm's socket.io-client@4.8.3 dist/socket.io.min.js): the
  // fallback when this server does not serve a client (`twistd sio` without --client-js).
  const CDN = {
    src: "https://cdn.socket.io/4.8.3/socket.io.min.js",
    integrity: "sha384-kzavj5fiMwLKzzD1f8S7TeoVIEi7uKHvbTA3ueZkrzYq75pNQUiUi6Dy98Q3fxb0",
  };
  const params = new URLSearchParams(location.search);
  const served = location.protocol === "http:" || location.protocol === "https:";
  // Served over HTTP(S), the page talks to its own origin only: a script named by the URL
  // would run in this origin (and the Content-Security-Policy it is served with forbids it).
  // Opened from a file, it has no origin to serve it: ?server=http://host:port names one.
  const SERVER = served ? "" : (params.get("server") || "http://localhost:8080").replace(/\/$/, "");
  const PATH = "/" + (params.get("path") || "/socket.io").replace(/^\/+|\/+$/g, "");
  // ?transports=polling forces long-polling; ?transports=websocket skips it.
  const TRANSPORTS = (params.get("transports") || "").split(",").map((t) => t.trim()).filter(Boolean);
  const STORE = window.sessionStorage; // per tab: two tabs can be two people
  let MAX_IMAGE = 800000;

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  const state = {
    nick: STORE.getItem("txsio-demo-nick"),
    room: STORE.getItem("txsio-demo-room"),
    shownRoom: null, // the room whose messages are on screen
    presence: { online: 0, rooms: [] },
  };

  // -- loading the client -----------------------------------------------------------------

  function loadScript(src, integrity) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      if (integrity) {
        script.integrity = integrity;
        script.crossOrigin = "anonymous";
      }
      script.src = src;
      script.onload = resolve;
      script.onerror = () => reject(new Error("cannot load " + src));
      document.head.append(script);
    });
  }

  async function loadClient() {
    try {
      await loadScript(SERVER + PATH + "/socket.io.js");
      if (typeof window.io === "function") return "server";
    } catch (e) {
      /* this server serves no client: the pinned CDN file */
    }
    await loadScript(CDN.src, CDN.integrity);
    if (typeof window.io !== "function") throw new Error("no io() in " + CDN.src);
    return "cdn";
  }

  // -- small views ------------------------------------------------------------------------

  function hue(name) {
    let h = 0;
    for (const ch of name || "") h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }

  function avatar(name, node) {
    node = node || el("span", "avatar");
    node.textContent = (name || "?").trim().charAt(0).toUpperCase();
    node.style.setProperty("--h", hue(name));
    return node;
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  let toastTimer = null;
  function toast(text) {
    const node = $("toast");
    node.textContent = text;
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (node.hidden = true), 4000);
  }

  function setStatus(kind, text) {
    $("status").dataset.state = kind;
    $("status-text").textContent = text;
  }

  // Follow new messages unless the reader scrolled up.
  let following = true;

  function follow() {
    if (following) $("scroller").scrollTop = $("scroller").scrollHeight;
  }

  function append(node) {
    $("messages").append(node);
    follow();
  }

  function addNotice(text) {
    const li = el("li", "notice", text);
    append(li);
    return li;
  }

  function addMessage(m, mine) {
    const li = el("li", mine ? "msg mine" : "msg");
    if (m.id) li.dataset.id = m.id;
    li.dataset.nick = m.nick;
    li.append(avatar(m.nick));
    const body = el("div", "body");
    const meta = el("div", "meta");
    meta.append(el("span", "nick", m.nick), el("time", "time", clock(m.time)));
    body.append(meta);
    const bubble = el("div", "bubble");
    if (m.blob) {
      const img = el("img", "photo");
      img.alt = m.name || "image";
      img.src = URL.createObjectURL(m.blob);
      img.addEventListener("load", follow);
      bubble.classList.add("has-photo");
      bubble.append(img);
    } else {
      bubble.textContent = m.text;
    }
    body.append(bubble);
    if (mine) body.append(el("div", "receipt", "sending…"));
    li.append(body);
    append(li);
    return li;
  }

  function receipt(li, status, text, title) {
    li.dataset.status = status;
    const node = li.querySelector(".receipt");
    node.textContent = text;
    if (title) node.title = title;
  }

  function acknowledged(li) {
    li.dataset.status = "pending";
    return (err, ack) => {
      if (err) return receipt(li, "failed", "not delivered", "no answer from the server");
      if (!ack || !ack.ok) return receipt(li, "failed", "not delivered", ack && ack.error);
      li.dataset.id = ack.id;
      const n = ack.recipients;
      receipt(li, "delivered", "✓ delivered",
        n === 0 ? "nobody else is here" : "sent to " + n + (n === 1 ? " person" : " people"));
    };
  }

  function renderRooms() {
    const list = $("rooms");
    list.replaceChildren();
    for (const room of state.presence.rooms) {
      const li = el("li");
      li.dataset.room = room.name;
      const button = el("button", room.name === state.room ? "room active" : "room");
      button.type = "button";
      button.append(el("span", "hash", "#"), el("span", "name", room.name),
        el("span", room.count ? "count" : "count zero", String(room.count)));
      button.addEventListener("click", () => join(room.name));
      li.append(button);
      list.append(li);
    }
    $("online-count").textContent = state.presence.online;
    const here = state.presence.rooms.find((r) => r.name === state.room);
    $("room-count").textContent = here ? here.count + " here" : "";
  }

  function renderMembers(nicks) {
    const list = $("members");
    list.replaceChildren();
    for (const nick of nicks) {
      const li = el("li");
      li.append(avatar(nick), el("span", "name", nick));
      if (nick === state.nick) li.append(el("span", "dim", " (you)"));
      list.append(li);
    }
  }

  function renderMe() {
    $("me-nick").textContent = state.nick || "…";
    avatar(state.nick || "?", $("me-avatar"));
  }

  function showRoom(info) {
    const same = state.shownRoom === info.room;
    state.room = info.room;
    STORE.setItem("txsio-demo-room", info.room);
    document.title = "#" + info.room + " · txsio chat";
    $("room-title").textContent = "#" + info.room;
    $("room-title").dataset.room = info.room;
    $("text").placeholder = "Message #" + info.room;
    $("leave").hidden = false;
    $("empty").hidden = true;
    $("members-section").hidden = false;
    $("text").disabled = $("send").disabled = false;
    renderMembers(info.members);
    if (!same) {
      state.shownRoom = info.room;
      $("messages").replaceChildren();
      for (const m of info.history) addMessage(m, false);
      addNotice("You joined #" + info.room);
    }
    renderRooms();
    $("text").focus();
  }

  function showNoRoom() {
    state.room = state.shownRoom = null;
    STORE.removeItem("txsio-demo-room");
    document.title = "txsio chat";
    $("room-title").textContent = "Welcome";
    delete $("room-title").dataset.room;
    $("leave").hidden = true;
    $("empty").hidden = false;
    $("members-section").hidden = true;
    $("messages").replaceChildren();
    $("text").disabled = $("send").disabled = true;
    renderRooms();
  }

  function askNick() {
    if (!socket) return;
    $("nick-input").value = state.nick || "";
    $("nick-error").textContent = "";
    if (!$("nick-dialog").open) $("nick-dialog").showModal();
    $("nick-input").focus();
  }

  // -- talking to the server --------------------------------------------------------------

  let socket = null;

  function join(room) {
    socket.emit("join", room, (ack) => {
      if (!ack.ok) return toast(ack.error);
      showRoom(ack);
    });
  }

  function leave() {
    socket.emit("leave", () => showNoRoom());
  }

  function setNick(nick, then) {
    socket.emit("nick", nick, (ack) => {
      if (!ack.ok) {
        $("nick-error").textContent = ack.error;
        return;
      }
      state.nick = ack.nick;
      STORE.setItem("txsio-demo-nick", ack.nick);
      renderMe();
      $("nick-dialog").close();
      if (then) then();
    });
  }

  function sendText(text) {
    const li = addMessage({ nick: state.nick, text, time: Date.now() }, true);
    socket.timeout(10000).emit("message", text, acknowledged(li));
  }

  async function shrink(file) {
    // Big photos are scaled down and re-encoded as JPEG to fit in one message.
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, 1600 / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    for (const quality of [0.85, 0.7, 0.5]) {
      const blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", quality));
      if (blob && blob.size <= MAX_IMAGE) return blob;
    }
    throw new Error("this image is too large");
  }

  async function sendImage(file) {
    if (!file || !state.room) return;
    if (!file.type.startsWith("image/")) return toast("only images can be shared");
    let blob = file;
    try {
      if (!/^image\/(png|jpeg|gif|webp)$/.test(file.type) || file.size > MAX_IMAGE) {
        blob = await shrink(file);
      }
    } catch (e) {
      return toast(e.message);
    }
    const data = await blob.arrayBuffer(); // an ArrayBuffer travels as a binary attachment
    const li = addMessage({ nick: state.nick, blob, name: file.name, time: Date.now() }, true);
    socket.timeout(20000).emit("image", { name: file.name, data }, acknowledged(li));
  }

  function showTransport() {
    const engine = socket.io.engine;
    setStatus("connected", "connected · " + engine.transport.name);
    engine.once("upgrade", () => {
      if (socket.connected) setStatus("connected", "connected · " + engine.transport.name);
    });
  }

  function connect() {
    const options = {
      path: PATH,
      // Sent with every connection: a page that reconnects is put back in its room.
      auth: (cb) => cb({ nick: state.nick, room: state.room }),
    };
    if (TRANSPORTS.length) options.transports = TRANSPORTS;
    socket = SERVER ? io(SERVER, options) : io(options);
    window.demoSocket = socket; // for poking at in the console

    socket.on("connect", showTransport);
    socket.on("disconnect", (reason) => {
      setStatus("disconnected", "disconnected · " + reason);
      if (state.shownRoom) addNotice("Connection lost (" + reason + "), reconnecting…");
    });
    socket.io.on("reconnect_attempt", (n) => setStatus("connecting", "reconnecting… (" + n + ")"));
    socket.on("connect_error", (err) => setStatus("disconnected", "cannot connect · " + err.message));

    socket.on("welcome", (w) => {
      MAX_IMAGE = w.max_image_bytes || MAX_IMAGE;
      state.presence = w.presence;
      const again = state.shownRoom !== null;
      if (w.room) {
        showRoom(w.room);
        if (again) addNotice("Reconnected");
      } else {
        if (state.shownRoom) showNoRoom();
        renderRooms();
      }
      if (!w.nick) {
        state.nick = null; // none yet, or the server refused the stored one
        askNick();
      }
    });
    socket.on("presence", (p) => {
      state.presence = p;
      renderRooms();
    });
    socket.on("members", (m) => {
      if (m.room === state.room) renderMembers(m.nicks);
    });
    socket.on("notice", (n) => {
      if (n.room === state.shownRoom) addNotice(n.text);
    });
    socket.on("message", (m) => {
      if (m.room === state.shownRoom) addMessage(m, false);
    });
    socket.on("image", (m) => {
      // m.data is an ArrayBuffer: the image came as a binary attachment, not base64.
      if (m.room !== state.shownRoom) return;
      addMessage({ ...m, blob: new Blob([m.data], { type: m.type }) }, false);
    });
  }

  // -- wiring -----------------------------------------------------------------------------

  function wire() {
    $("nick-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const first = !state.nick;
      setNick($("nick-input").value, () => {
        if (first || !state.room) join(state.room || "lobby");
      });
    });
    $("nick-dialog").addEventListener("cancel", (e) => {
      if (!state.nick) e.preventDefault(); // a nickname is needed to chat
    });
    $("rename").addEventListener("click", askNick);
    $("leave").addEventListener("click", leave);
    $("new-room").addEventListener("submit", (e) => {
      e.preventDefault();
      const name = $("new-room-name").value.trim();
      if (name) join(name);
      $("new-room-name").value = "";
    });
    $("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      const text = $("text").value.trim();
      if (!text || !state.room) return;
      $("text").value = "";
      sendText(text);
    });
    $("image-input").addEventListener("change", (e) => {
      sendImage(e.target.files[0]);
      e.target.value = "";
    });
    document.addEventListener("paste", (e) => {
      const file = [...(e.clipboardData ? e.clipboardData.files : [])].find((f) => f.type.startsWith("image/"));
      if (file) sendImage(file);
    });
    $("scroller").addEventListener("scroll", () => {
      const s = $("scroller");
      following = s.scrollHeight - s.scrollTop - s.clientHeight < 80;
    });
    $("scroller").addEventListener("dragover", (e) => e.preventDefault());
    $("scroller").addEventListener("drop", (e) => {
      e.preventDefault();
      sendImage(e.dataTransfer.files[0]);
    });
  }

  async function main() {
    wire();
    renderMe();
    const source = await loadClient().catch(() => null);
    if (!source) {
      setStatus("disconnected", "cannot load the Socket.IO client");
      $("empty").firstElementChild.textContent =
        "The Socket.IO client could not be loaded, neither from " + (SERVER || "this server") +
        PATH + "/socket.io.js nor from " + CDN.src + ". Serve one with twistd sio " +
        "--client-js PATH (socket.io-client's dist/socket.io.min.js).";
      return;
    }
    document.documentElement.dataset.client = source;
    connect();
  }

  main();
})();
