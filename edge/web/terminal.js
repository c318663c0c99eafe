// The browser terminal of access-edge (docs/protocol.md 13). No framework:
// xterm.js and its fit addon, one websocket to the edge on this host.
// Element ids and body[data-state] are what the tests read
// (connecting | open | ended | error): keep them stable.
(function () {
  "use strict";

  var statusLine = document.getElementById("status");
  var overlay = document.getElementById("overlay");
  var overlayBox = document.getElementById("overlay-box");
  var overlayTitle = document.getElementById("overlay-title");
  var overlayMessage = document.getElementById("overlay-message");
  var reconnect = document.getElementById("reconnect");

  var term = new Terminal({
    screenReaderMode: true,
    cursorBlink: true,
    scrollback: 5000,
    fontFamily: "ui-monospace, Menlo, Consolas, 'DejaVu Sans Mono', monospace"
  });
  var fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  fit.fit();

  var socket = null;
  var encoder = new TextEncoder();
  var ended = false;

  function setState(state) { document.body.dataset.state = state; }
  function status(text) { statusLine.textContent = text; }

  function finish(kind, title, message) {
    ended = true;
    setState(kind);
    overlayBox.className = kind === "error" ? "error" : "";
    overlayTitle.textContent = title;
    overlayMessage.textContent = message;
    overlay.hidden = false;
    status(title);
    reconnect.focus();
  }

  function sendResize() {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
    }
  }

  function connect() {
    ended = false;
    overlay.hidden = true;
    setState("connecting");
    status("Connecting to " + location.host + "…");
    fit.fit();
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host +
      "/cdn-cgi/access/ssh/session?cols=" + term.cols + "&rows=" + term.rows;
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    socket.onopen = function () { status("Connected to the edge; logging in to the origin…"); };
    socket.onmessage = function (event) {
      if (typeof event.data !== "string") {
        if (document.body.dataset.state === "connecting") { setState("open"); }
        term.write(new Uint8Array(event.data));
        return;
      }
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === "status") {
        status(message.message);
        if (message.ready) { setState("open"); term.focus(); }
      } else if (message.type === "exit") {
        var how = message.signal ? "killed by signal " + message.signal
          : "exit status " + (message.status === null ? "unknown" : message.status);
        finish("ended", "The session ended (" + how + ")", "The connection to the server is closed.");
      } else if (message.type === "error") {
        var title = message.kind === "host_key_changed"
          ? "WARNING: the server's host key has changed!" : "The session could not go on";
        finish("error", title, message.message);
      }
    };
    socket.onclose = function (event) {
      if (!ended) {
        finish("error", "The connection to the edge closed",
          event.reason || "The websocket closed (code " + event.code + ").");
      }
    };
  }

  term.onData(function (data) {
    if (socket && socket.readyState === WebSocket.OPEN) { socket.send(encoder.encode(data)); }
  });
  term.onBinary(function (data) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      var bytes = new Uint8Array(data.length);
      for (var i = 0; i < data.length; i++) { bytes[i] = data.charCodeAt(i) & 0xff; }
      socket.send(bytes);
    }
  });
  term.onResize(sendResize);
  window.addEventListener("resize", function () { fit.fit(); });

  // Ctrl+Shift+C / Ctrl+Shift+V (Cmd on a Mac goes through the browser's own
  // copy and paste, which xterm.js handles).
  term.attachCustomKeyEventHandler(function (event) {
    if (event.type !== "keydown" || !event.ctrlKey || !event.shiftKey) { return true; }
    if (event.code === "KeyC") {
      var selection = term.getSelection();
      if (selection && navigator.clipboard) { navigator.clipboard.writeText(selection); }
      return false;
    }
    if (event.code === "KeyV") {
      if (navigator.clipboard && navigator.clipboard.readText) {
        navigator.clipboard.readText().then(function (text) { term.paste(text); });
      }
      return false;
    }
    return true;
  });

  reconnect.addEventListener("click", function () { term.reset(); connect(); });
  connect();
})();
