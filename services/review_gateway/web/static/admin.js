// Keeps the admin page live: reload every 10 s unless the admin is typing or
// just created a reviewer (its token is shown once and must stay on screen).
"use strict";
(function () {
  if (document.getElementById("new-token")) return;
  setInterval(function () {
    var el = document.activeElement;
    var typing = el && (el.tagName === "INPUT" || el.tagName === "SELECT");
    if (!typing && document.visibilityState === "visible") window.location.replace("/admin");
  }, 10000);
})();
