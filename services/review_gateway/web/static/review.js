// The reviewer page: one item at a time, keyboard first.
//
// Rules this script keeps (the server enforces the rest):
// * a decision is sent with an idempotency key and retried with the same key
//   after a network error or a 5xx, so a retry never makes a second review;
// * the page never advances before the server confirmed the save;
// * nothing about items goes to browser storage (no localStorage, no
//   sessionStorage; the server sends Cache-Control: no-store);
// * content of sensitive items starts blurred / masked and is revealed only
//   while held; the seconds revealed are reported as exposure.
"use strict";
(function () {
  var meta = function (n) { return document.querySelector('meta[name="' + n + '"]').content; };
  var CSRF = meta("csrf-token");
  var UNDO_S = Number(meta("undo-seconds")) || 0;
  var TASK = meta("task-id");
  var $ = function (id) { return document.getElementById(id); };

  var current = null;      // the item shown (server JSON)
  var chosen = null;       // chosen label index
  var busy = false;        // a decision is on its way
  var lastReview = null;   // {id, until} of the last submission, for undo
  var stopped = false;
  var expired = false;
  var revealAt = null;     // performance.now() when the reveal began
  var revealedMs = 0;      // revealed time not yet reported
  var polling = false;

  function setStatus(text, cls) {
    var s = $("status");
    s.textContent = text;
    s.className = "status " + (cls || "");
  }

  function newKey() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  // POST /api/<action>; with retry, network errors, 5xx and 429 are retried
  // (same body, so the same idempotency key) until the server answers.
  async function call(action, body, retry) {
    var delay = 400;
    for (var attempt = 1; ; attempt++) {
      var resp = null;
      try {
        resp = await fetch("/api/" + action, {
          method: "POST",
          headers: { "content-type": "application/json", "x-csrf-token": CSRF },
          body: JSON.stringify(body),
          credentials: "same-origin",
          cache: "no-store",
        });
      } catch (e) { resp = null; }
      if (resp && resp.ok) return resp.json();
      if (resp && resp.status === 401) { window.location.assign("/login"); throw { code: "UNAUTHENTICATED" }; }
      var transient = !resp || resp.status >= 500 || resp.status === 429;
      if (!retry || !transient) {
        var err = { status: resp ? resp.status : 0, code: "NETWORK", error: "network error" };
        if (resp) { try { Object.assign(err, await resp.json()); } catch (e) { /* not JSON */ } }
        throw err;
      }
      setStatus("Retrying… (attempt " + (attempt + 1) + ")", "retrying");
      await sleep(delay);
      delay = Math.min(delay * 2, 8000);
    }
  }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

  function kbd(text) { var k = document.createElement("kbd"); k.textContent = text; return k; }

  function blank() {
    hideReveal();
    $("image").removeAttribute("src");
    clear($("text"));
    $("workspace").hidden = true;
  }

  function show(item) {
    hideReveal();
    current = item;
    chosen = null;
    expired = false;
    busy = false;
    if (!item) { blank(); waitForItems(); return; }
    $("workspace").hidden = false;
    $("task-name").textContent = item.task.name;
    $("instructions").textContent = item.task.instructions;
    var warning = $("warning");
    warning.hidden = !item.sensitive;
    warning.textContent = item.sensitive
      ? "Suspected sensitive content: " + item.category + ". It is blurred or masked; hold R or press and hold it to reveal."
      : "";
    var machine = $("machine");
    clear(machine);
    machine.hidden = !item.machine;
    if (item.machine) {
      var parts = [];
      if (item.machine.label !== undefined) parts.push("Machine label: " + item.machine.label);
      if (item.machine.eps !== undefined) parts.push("critic's error probability " + item.machine.eps);
      machine.textContent = parts.join(" · ");
      if (item.machine.rationale) {
        var p = document.createElement("p");
        p.textContent = item.machine.rationale;
        machine.appendChild(p);
      }
    }
    var media = $("media");
    media.classList.remove("revealed");
    media.style.setProperty("--blur", (item.blur_px || 0) + "px");
    media.hidden = !item.item.image;
    if (item.item.image) $("image").src = item.item.image; else $("image").removeAttribute("src");
    $("question").hidden = !item.item.question;
    $("question").textContent = item.item.question || "";
    var text = $("text");
    text.classList.remove("revealed");
    clear(text);
    item.item.segments.forEach(function (seg) {
      var span = document.createElement("span");
      span.textContent = seg.t;
      if (seg.m) { span.className = "masked"; span.setAttribute("aria-label", "masked word"); }
      text.appendChild(span);
    });
    var buttons = $("label-buttons");
    clear(buttons);
    item.task.labels.forEach(function (label, i) {
      var b = document.createElement("button");
      b.type = "button";
      b.dataset.index = String(label.index);
      b.setAttribute("aria-pressed", "false");
      if (i < 9) { b.appendChild(kbd(String(i + 1))); b.appendChild(document.createTextNode(" ")); }
      b.appendChild(document.createTextNode(label.name));
      if (label.description) b.title = label.description;
      b.addEventListener("click", function () { choose(label.index); });
      buttons.appendChild(b);
    });
    $("submit").disabled = true;
    updateUndo();
    tick();
  }

  function choose(index) {
    if (!current || busy || expired) return;
    chosen = index;
    Array.prototype.forEach.call($("label-buttons").children, function (b) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.index) === index));
    });
    $("submit").disabled = false;
  }

  function updateUndo() {
    $("undo").hidden = !(lastReview && Date.now() < lastReview.until);
  }

  function tick() {
    updateUndo();
    if (!current) { $("lease-timer").textContent = ""; return; }
    var left = Math.round((current.deadline_ms - Date.now()) / 1000);
    if (left <= 0 && !expired) {
      expired = true;
      hideReveal();
      $("submit").disabled = true;
      setStatus("Lease expired: the item went back to the queue. Press Enter for the next one.", "expired");
    }
    $("lease-timer").textContent = left > 0 ? "Lease: " + Math.floor(left / 60) + ":" + ("0" + (left % 60)).slice(-2) + " left" : "Lease expired";
  }
  setInterval(tick, 1000);

  async function loadNext() {
    try {
      var res = await call("next", { wait_s: 0, task_id: TASK }, true);
      show(res.next);
      if (res.next) setStatus("Ready.", "");
    } catch (err) { setStatus("Could not load an item: " + (err.error || err.code), "failed"); }
  }

  async function waitForItems() {
    if (polling) return;
    polling = true;
    setStatus("No items to review right now; waiting for the next one…", "");
    try {
      while (!stopped && !current) {
        var res = await call("next", { wait_s: 15, task_id: TASK }, true);
        if (stopped) {
          if (res.next) await call("release", { lease_ids: [res.next.lease_id] }, true);
          break;
        }
        if (res.next) { polling = false; show(res.next); setStatus("Ready.", ""); return; }
      }
    } catch (err) {
      setStatus("Could not load an item: " + (err.error || err.code), "failed");
    }
    polling = false;
  }

  async function submit() {
    if (!current || busy || chosen === null || expired) return;
    busy = true;
    flushExposure();
    current.key = current.key || newKey();
    var body = { lease_id: current.lease_id, label: chosen, key: current.key, task_id: TASK };
    $("submit").disabled = true;
    setStatus("Saving…", "saving");
    try {
      var res = await call("submit", body, true);
      lastReview = { id: res.review_id, until: Date.now() + UNDO_S * 1000 };
      // The outcome (second review, dispute) is not shown: overlap is blind,
      // so a reviewer cannot be more careful only on the checked items.
      setStatus(res.duplicate ? "Saved (it had already been saved)." : "Saved.", "saved");
      show(res.next);
    } catch (err) {
      busy = false;
      if (err.code === "FAILED_PRECONDITION") {
        setStatus("Not saved: the lease ended (expired or released); the item is back in the queue.", "expired");
        expired = true;
      } else if (err.code !== "UNAUTHENTICATED") {
        setStatus("Not saved: " + (err.error || err.code), "failed");
        $("submit").disabled = false;
      }
    }
  }

  function openDialog(id) { $(id).hidden = false; var b = $(id).querySelector("button"); if (b) b.focus(); }
  function closeDialogs() { ["skip-menu", "help"].forEach(function (id) { $(id).hidden = true; }); }

  async function skip(reason) {
    closeDialogs();
    if (!current || busy) return;
    busy = true;
    flushExposure();
    setStatus("Skipping…", "saving");
    try {
      var res = await call("skip", { lease_id: current.lease_id, reason: reason, task_id: TASK }, true);
      setStatus("Skipped.", "saved");
      show(res.next);
    } catch (err) {
      busy = false;
      setStatus("Not skipped: " + (err.error || err.code), "failed");
    }
  }

  async function undo() {
    if (!lastReview || Date.now() >= lastReview.until || busy) return;
    busy = true;
    var review = lastReview;
    setStatus("Undoing…", "saving");
    try {
      var showing = current ? current.lease_id : "";
      var res = await call("undo", { review_id: review.id, showing: showing }, true);
      lastReview = null;
      show(res.item);
      setStatus("Undone: label the item again.", "saved");
    } catch (err) {
      busy = false;
      lastReview = null;
      updateUndo();
      setStatus(err.code === "FAILED_PRECONDITION" ? "Too late to undo: that label is final." : "Not undone: " + (err.error || err.code), "failed");
    }
  }

  async function stop() {
    closeDialogs();
    flushExposure();
    stopped = true;
    var held = current ? [current.lease_id] : [];
    current = null;
    blank();
    $("stopped").hidden = false;
    $("resume").focus();
    setStatus("Stopped.", "");
    try { await call("release", { lease_ids: held }, true); } catch (err) { /* the lease will expire */ }
  }

  function resume() {
    stopped = false;
    $("stopped").hidden = true;
    loadNext();
  }

  // ------------------------------------------------------------- reveal

  function reveal() {
    if (!current || expired || revealAt !== null) return;
    $("media").classList.add("revealed");
    $("text").classList.add("revealed");
    revealAt = performance.now();
  }

  function hideReveal() {
    $("media").classList.remove("revealed");
    $("text").classList.remove("revealed");
    if (revealAt !== null) { revealedMs += performance.now() - revealAt; revealAt = null; }
    flushExposure();
  }

  function flushExposure() {
    if (revealAt !== null) { revealedMs += performance.now() - revealAt; revealAt = performance.now(); }
    if (!current || !current.sensitive || revealedMs < 50) { revealedMs = 0; return; }
    var seconds = Math.min(revealedMs / 1000, 3600);
    revealedMs = 0;
    call("exposure", { lease_id: current.lease_id, seconds: seconds }, false).then(function (res) {
      if (res.break_due) openDialog("break");
      if (res.capped) setStatus("Daily limit for this category reached: you will get other items.", "");
    }).catch(function () { /* best effort: the lease is gone or the network is down */ });
  }

  ["media", "text"].forEach(function (id) {
    var el = $(id);
    el.addEventListener("pointerdown", function (e) { e.preventDefault(); reveal(); });
    ["pointerup", "pointerleave", "pointercancel"].forEach(function (t) { el.addEventListener(t, hideReveal); });
  });
  window.addEventListener("blur", hideReveal);
  document.addEventListener("visibilitychange", function () { if (document.hidden) hideReveal(); });

  // --------------------------------------------------------------- keys

  document.addEventListener("keyup", function (e) { if (e.key === "r" || e.key === "R") hideReveal(); });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var k = e.key;
    if (!$("break").hidden) return;
    if (!$("skip-menu").hidden) {
      var reasons = { "1": "unsure", "2": "distressing", "3": "broken" };
      if (reasons[k]) { e.preventDefault(); skip(reasons[k]); }
      else if (k === "Escape") { e.preventDefault(); closeDialogs(); }
      return;
    }
    if (k === "?") { e.preventDefault(); var h = $("help"); if (h.hidden) openDialog("help"); else h.hidden = true; return; }
    if (!$("help").hidden) { if (k === "Escape") { e.preventDefault(); closeDialogs(); } return; }
    if (stopped) { if (k === "Enter") { e.preventDefault(); resume(); } return; }
    if (k === "Escape") { e.preventDefault(); stop(); return; }
    if (k === "r" || k === "R") { if (!e.repeat) reveal(); e.preventDefault(); return; }
    if (k === "u" || k === "U") { e.preventDefault(); undo(); return; }
    if (k === "s" || k === "S") { if (current && !busy) { e.preventDefault(); openDialog("skip-menu"); } return; }
    if (k === "Enter") {
      e.preventDefault();
      if (expired && !busy) { current = null; loadNext(); } else submit();
      return;
    }
    if (/^[1-9]$/.test(k) && current) {
      var labels = current.task.labels;
      var i = Number(k) - 1;
      if (i < labels.length) { e.preventDefault(); choose(labels[i].index); }
    }
  });

  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", function () { if (current && !busy) openDialog("skip-menu"); });
  $("undo").addEventListener("click", undo);
  $("stop").addEventListener("click", stop);
  $("resume").addEventListener("click", resume);
  $("break-done").addEventListener("click", function () { $("break").hidden = true; });
  Array.prototype.forEach.call(document.querySelectorAll("#skip-menu button"), function (b) {
    b.addEventListener("click", function () { skip(b.dataset.reason); });
  });

  loadNext();
})();
