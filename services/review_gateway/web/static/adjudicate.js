// Adjudication page: the admin's own blur, and reveal only while held
// (press and hold the image, or hold R), like the reviewer page.
"use strict";
(function () {
  var media = document.getElementById("media");
  var text = document.getElementById("text");
  if (media) media.style.setProperty("--blur", (Number(media.dataset.blur) || 18) + "px");
  function reveal() {
    if (media) media.classList.add("revealed");
    if (text) text.classList.add("revealed");
  }
  function hide() {
    if (media) media.classList.remove("revealed");
    if (text) text.classList.remove("revealed");
  }
  [media, text].forEach(function (el) {
    if (!el) return;
    el.addEventListener("pointerdown", function (e) { e.preventDefault(); reveal(); });
    ["pointerup", "pointerleave", "pointercancel"].forEach(function (t) { el.addEventListener(t, hide); });
  });
  document.addEventListener("keydown", function (e) {
    if ((e.key === "r" || e.key === "R") && !e.repeat && !e.ctrlKey && !e.metaKey) reveal();
  });
  document.addEventListener("keyup", function (e) { if (e.key === "r" || e.key === "R") hide(); });
  window.addEventListener("blur", hide);
  document.addEventListener("visibilitychange", hide);
})();
